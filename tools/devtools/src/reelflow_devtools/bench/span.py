"""One counted run of a stack: what its processes, database and broker spent over it.

``throughput`` (reelflow) and ``taskqueue`` (the baseline) measure a size's run
the same way, through :class:`Span`: the machine's load average as it starts, the
database server's own operation counters (``top``), each process's CPU from
``/proc`` and RabbitMQ's when it is local, from :meth:`Span.start` to
:meth:`Span.stop`; clips/s over the span from its start to the run's end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from reelflow_devtools import dbcounters


class MeasuredStack(Protocol):
    """What a span reads of a running stack."""

    @property
    def mongo_url(self) -> str: ...

    @property
    def database(self) -> str: ...

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each process of the stack has used so far."""
        ...

    def broker_cpu_seconds(self) -> float | None:
        """RabbitMQ's CPU seconds so far; None when it is not on this machine."""
        ...


@dataclass
class Span:
    """Started by :meth:`start`, ended by :meth:`stop`, reported by :meth:`results`."""

    stack: MeasuredStack
    #: wall clock (POSIX seconds), as the stored ``completed_at`` the run ends at
    started: float
    load_at_start: tuple[float, float, float]
    _ops_before: dbcounters.Counters
    _cpu_before: dict[str, float]
    _broker_before: float | None
    #: database operations over the span, by collection (after :meth:`stop`)
    ops: dbcounters.Counters = field(default_factory=dict)
    _cpu: dict[str, float] = field(default_factory=dict)
    _broker: float | None = None

    @classmethod
    async def start(cls, stack: MeasuredStack) -> Span:
        load = os.getloadavg()
        ops = await dbcounters.operations(stack.mongo_url, stack.database)
        cpu, broker = stack.cpu_seconds(), stack.broker_cpu_seconds()
        return cls(stack, time.time(), load, ops, cpu, broker)

    async def stop(self) -> None:
        cpu, broker = self.stack.cpu_seconds(), self.stack.broker_cpu_seconds()
        after = await dbcounters.operations(self.stack.mongo_url, self.stack.database)
        self.ops = dbcounters.spent(self._ops_before, after)
        self._cpu = {name: used - self._cpu_before.get(name, 0.0) for name, used in cpu.items()}
        if broker is not None and self._broker_before is not None:
            self._broker = broker - self._broker_before

    def results(self, clips: int, ended: float) -> dict[str, Any]:
        """The figures both scenarios report of ``clips`` clips, the last one ended at ``ended``."""
        wall_s = ended - self.started
        ops = dbcounters.total(self.ops)
        return {
            "wall_s": round(wall_s, 3),
            "clips_per_s": round(clips / wall_s, 2) if wall_s > 0 else None,
            # 1, 5 and 15 minutes, as the run started: a busier machine's run is not comparable
            "load_at_start": [round(load, 2) for load in self.load_at_start],
            "db_ops": ops,
            "db_ops_per_clip": round(ops / clips, 2),
            "db_ops_by_kind": {kind: dbcounters.total(self.ops, kind) for kind in dbcounters.KINDS},
            # the stack's processes only; RabbitMQ's apart (a shared broker: all its work)
            "cpu_s_per_clip": {name: round(spent / clips, 4) for name, spent in self._cpu.items()},
            "broker_cpu_s_per_clip": (
                None if self._broker is None else round(self._broker / clips, 4)
            ),
        }
