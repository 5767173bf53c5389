"""RabbitMQ: robust connections, the one Publisher, the one consume() policy."""

from reelflow_common.broker.connection import amqp_channel, amqp_connection
from reelflow_common.broker.consume import consume
from reelflow_common.broker.publisher import Publisher, PublishError, confirmed_together
from reelflow_common.transient import is_transient

__all__ = [
    "PublishError",
    "Publisher",
    "amqp_channel",
    "amqp_connection",
    "confirmed_together",
    "consume",
    "is_transient",
]
