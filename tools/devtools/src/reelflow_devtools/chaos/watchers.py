"""WebSocket watchers that hang up and reconnect with ``after_seq``, checking what they see.

A watcher follows one project. It hangs up by itself after a random number of
messages (and is cut off whenever the notifier is killed), then reconnects with
``?after_seq=`` the last ``seq`` it saw. It checks every message: after the
first, an event's ``seq`` is exactly one more than the last one seen (no gap,
no repeat), a snapshot's is never lower, no clip ever goes backwards
(queued → processing → an end, and an end never changes), and a video is
stored (``clip.stored``) only for a clip already seen succeed.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

import websockets

from reelflow_common.messages import EVENT_TYPES
from reelflow_common.topology import CLIP_STORED, CLIP_UPDATED

#: a clip's progress: it may only move forward
_RANK = {"queued": 0, "processing": 1, "success": 2, "failed": 2, "cancelled": 2}


@dataclass
class WatchLog:
    """What one watcher saw of one project."""

    project_id: str
    connections: int = 0
    messages: int = 0
    snapshots: int = 0
    finished: bool = False
    violations: list[str] = field(default_factory=list)
    last_seq: int | None = None
    clips: dict[int, str] = field(default_factory=dict)  # scene -> status

    def see(self, message: dict[str, Any]) -> None:
        """Check one message against what came before it, then remember it."""
        self.messages += 1
        kind = message.get("type")
        if kind == "snapshot":
            self.snapshots += 1
            seq = message["seq"]
            if self.last_seq is not None and seq < self.last_seq:
                self.violations.append(f"snapshot seq {seq} after seq {self.last_seq}")
            project = message["project"]
            for clip in project["results"]:
                self._clip(clip["scene_index"], clip["status"], seq)
            self.last_seq = max(seq, self.last_seq or 0)
            self.finished = bool(project["all_complete"])
        elif kind in EVENT_TYPES:
            seq = message["seq"]
            if self.last_seq is not None and seq != self.last_seq + 1:
                what = "gap" if seq > self.last_seq + 1 else "repeat"
                self.violations.append(f"{what}: seq {seq} after seq {self.last_seq}")
            if kind == CLIP_UPDATED:
                self._clip(message["clip"]["scene_index"], message["clip"]["status"], seq)
            elif kind == CLIP_STORED and self.clips.get(message["scene_index"]) != "success":
                scene = message["scene_index"]
                self.violations.append(f"scene {scene} stored while {self.clips.get(scene)}")
            self.last_seq = max(seq, self.last_seq or 0)
            if kind in ("clip.updated", "project.finished"):  # the others change no status
                self.finished = kind == "project.finished" and message["counts"]["pending"] == 0

    def _clip(self, scene: int, status: str, seq: int) -> None:
        before = self.clips.get(scene)
        if before is not None and (
            _RANK[status] < _RANK[before] or (_RANK[before] == 2 and status != before)
        ):
            self.violations.append(f"scene {scene} went {before} -> {status} (seq {seq})")
        self.clips[scene] = status

    def url(self, ws_url: str, key: str) -> str:
        url = f"{ws_url}/v1/ws/projects/{self.project_id}?token={key}"
        return url if self.last_seq is None else f"{url}&after_seq={self.last_seq}"


async def watch(ws_url: str, key: str, log: WatchLog, rng: random.Random, deadline: float) -> None:
    """Follow the project until it is finished or the loop's clock passes ``deadline``."""
    loop = asyncio.get_running_loop()
    while not log.finished and loop.time() < deadline:
        budget = rng.randint(1, 8)  # messages until this watcher hangs up by itself
        try:
            async with websockets.connect(log.url(ws_url, key), open_timeout=5) as ws:
                log.connections += 1
                while budget > 0 and not log.finished:
                    left = deadline - loop.time()
                    raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, left))
                    log.see(json.loads(raw))
                    budget -= 1
        except (OSError, TimeoutError, websockets.WebSocketException):
            pass  # the notifier was killed, or is starting: reconnect
        await asyncio.sleep(rng.uniform(0.05, 0.5))  # between connections; the deadline bounds it
