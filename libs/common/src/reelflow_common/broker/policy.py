"""Which failures are worth a retry: decided by exception type, never by message text."""

from __future__ import annotations

from aio_pika.exceptions import AMQPConnectionError, ChannelInvalidStateError
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


def retry_delay_ms(ladder: tuple[int, ...], retries: int) -> int:
    """The delay before retry number ``retries + 1``: up the ladder, then stay at its cap."""
    return ladder[min(retries, len(ladder) - 1)]
