"""Queue and exchange names, the SDK's poll schedule as wait queues, publishing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import aio_pika
from aio_pika.abc import AbstractChannel, FieldValue

from reelflow_devtools.bench.task_queue.config import (
    SDK_BACKOFF,
    SDK_CAP_S,
    SDK_FIRST_S,
    SDK_SECOND_S,
    Config,
    Document,
)


@dataclass(frozen=True)
class Names:
    """Every queue, exchange and routing key of the baseline, under its ``prefix``."""

    #: the routing key of a project's end on the events exchange
    project_finished: ClassVar[str] = "project.finished"
    #: the arguments every queue of the baseline starts from
    quorum: ClassVar[dict[str, FieldValue]] = {"x-queue-type": "quorum"}

    prefix: str

    @property
    def submit(self) -> str:
        return f"{self.prefix}tq.submit"

    @property
    def poll(self) -> str:
        return f"{self.prefix}tq.poll"

    @property
    def events(self) -> str:
        return f"{self.prefix}tq.events"

    def wait(self, queue: str, delay_ms: int) -> str:
        return f"{queue}.wait.{delay_ms}ms"


def poll_delays_ms(speedup: float) -> list[int]:
    """The SDK's wait before each poll, divided by ``speedup``; the last one repeats."""
    delays, delay = [SDK_FIRST_S], SDK_SECOND_S
    while delay < SDK_CAP_S:
        delays.append(delay)
        delay = min(delay * SDK_BACKOFF, SDK_CAP_S)
    delays.append(SDK_CAP_S)
    return [max(1, round(seconds * 1000 / speedup)) for seconds in delays]


def submit_retry_ms(speedup: float) -> int:
    return max(1, round(SDK_FIRST_S * 1000 / speedup))


def queue_names(config: Config) -> list[str]:
    """Every queue :func:`declare` makes (for deleting them again)."""
    names = Names(config.prefix)
    waits = [names.wait(names.poll, ms) for ms in sorted(set(poll_delays_ms(config.speedup)))]
    return [
        names.submit,
        names.poll,
        names.wait(names.submit, submit_retry_ms(config.speedup)),
        *waits,
    ]


async def declare(channel: AbstractChannel, config: Config) -> None:
    """Work queues, wait queues that dead-letter into them when their TTL ends, the events."""
    names = Names(config.prefix)
    await channel.declare_exchange(names.events, aio_pika.ExchangeType.TOPIC, durable=True)
    # The arguments reelflow declares its own work and wait queues with (but the DLQ:
    # past the delivery limit a message is dropped, there being no DLQ here).
    work: dict[str, FieldValue] = {**Names.quorum, "x-delivery-limit": config.delivery_limit}
    for queue in (names.submit, names.poll):
        await channel.declare_queue(queue, durable=True, arguments=work)
    waits = [(names.submit, submit_retry_ms(config.speedup))]
    waits += [(names.poll, ms) for ms in sorted(set(poll_delays_ms(config.speedup)))]
    for target, delay_ms in waits:
        arguments: dict[str, FieldValue] = {
            **Names.quorum,
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
            # Expired messages move on only once the work queue confirms them.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-max-length": config.wait_queue_max_length,
        }
        await channel.declare_queue(names.wait(target, delay_ms), durable=True, arguments=arguments)


async def delete_topology(channel: AbstractChannel, config: Config) -> None:
    """Every queue and the exchange :func:`declare` makes."""
    for name in queue_names(config):
        await channel.queue_delete(name)
    await channel.exchange_delete(Names(config.prefix).events)


async def publish(channel: AbstractChannel, routing_key: str, body: Document) -> None:
    """A persistent message on the default exchange, confirmed by the broker."""
    message = aio_pika.Message(
        json.dumps(body).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await channel.default_exchange.publish(message, routing_key=routing_key)


def now() -> datetime:
    return datetime.now(UTC)
