"""Robust RabbitMQ connections and confirm-mode channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from reelflow_common.broker.transport import connect_robust
from reelflow_common.lifecycle import wait_for
from reelflow_common.logging import get_logger
from reelflow_common.settings import AmqpSettings

log = get_logger(__name__)


@asynccontextmanager
async def amqp_connection(
    settings: AmqpSettings,
    *,
    name: str,
    stop: asyncio.Event | None = None,
    reconnect_interval_s: float = 2.0,
    close_timeout_s: float = 10.0,
    on_failure: Callable[[Exception], object] | None = None,
) -> AsyncIterator[AbstractRobustConnection]:
    """A connection that reconnects by itself and restores its channels and consumers.

    ``name`` shows in the RabbitMQ management UI, so an operator can tell the
    services' connections apart. The first connect waits for the broker, logging
    each failed attempt, until it answers (or ``stop`` is set: ``Stopped``): a
    service started before RabbitMQ serves ``/healthz``, reports itself unready,
    and carries on once the broker is there, instead of exiting. ``on_failure`` is told
    each failed attempt of that first connect (``wait_for``).
    """
    url = settings.amqp_url.get_secret_value()
    connection = await wait_for(
        "rabbitmq",
        lambda: connect_robust(url, name=name, reconnect_interval_s=reconnect_interval_s),
        stop=stop,
        on_failure=on_failure,
    )
    try:
        yield connection
    finally:
        try:
            # A broker that stopped answering must not keep a stopping process alive.
            await asyncio.wait_for(connection.close(), timeout=close_timeout_s)
        except TimeoutError:
            log.warning("amqp_close_timed_out", connection=name)


@asynccontextmanager
async def amqp_channel(
    connection: AbstractRobustConnection, *, prefetch: int = 0
) -> AsyncIterator[AbstractRobustChannel]:
    """A channel with publisher confirms on and unroutable publishes raised as errors.

    ``prefetch`` bounds the unacknowledged deliveries of each consumer on this
    channel (0: unbounded, fine for a channel that only publishes).
    """
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        if prefetch:
            await channel.set_qos(prefetch_count=prefetch)
        yield channel
    finally:
        if not channel.is_closed:
            try:
                await asyncio.wait_for(channel.close(), timeout=10.0)
            except TimeoutError:
                log.warning("amqp_channel_close_timed_out")
