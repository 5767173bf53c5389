"""Which failures are outages worth waiting out: decided by exception type, never by text."""

from __future__ import annotations

import httpx
from aio_pika.exceptions import AMQPConnectionError, AMQPError, ChannelInvalidStateError
from pymongo.errors import ConnectionFailure, PyMongoError

from reelflow_common.errors import TransientError

#: unavailable for now; the same work may well succeed later
_TRANSIENT = (
    TransientError,
    ConnectionFailure,  # AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
    AMQPConnectionError,
    ChannelInvalidStateError,  # the channel closed under us while the connection recovers
    ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """True for outages (broker, database, Runware); False for bugs and bad data."""
    if isinstance(exc, _TRANSIENT):
        return True
    # An operation that ran out of its timeoutMS budget is an outage, not a bug.
    return isinstance(exc, PyMongoError) and exc.timeout


#: Anything MongoDB, RabbitMQ or an HTTP API can raise, outage or not. A request that met
#: one is answered 503 (its cause is behind us, not in the request), whether or not a
#: retry of the same message would help (that is :func:`is_transient`).
BACKING_SERVICE_ERRORS: tuple[type[Exception], ...] = (
    TransientError,
    PyMongoError,  # ExecutionTimeout, WriteConcernError, AutoReconnect, OperationFailure, ...
    AMQPError,
    ChannelInvalidStateError,
    httpx.HTTPError,
    ConnectionError,
    TimeoutError,
)
