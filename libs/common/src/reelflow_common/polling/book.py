"""What has been learned about completion times, per profile, in memory (no I/O).

Counts come in two layers: the ``shared`` snapshot (every replica's completions,
as last loaded from MongoDB by :class:`~reelflow_common.polling.stats.PollStats`)
and this process's ``pending`` completions, not yet written. Plans are made from
the snapshot only, so every replica plans from the same numbers and a plan
changes only when a load brings new ones (``version`` counts the loads).

The distribution of a profile shrinks towards its model's, and a model's towards
the generic prior (:func:`~reelflow_common.polling.histogram.generic_prior`), each
parent weighing as much as ``prior_weight`` observations: a duration or a
resolution that behaves like the rest of its model costs nothing, one that does
not pulls away as its own counts grow. Counts are planned from smoothed
(:func:`~reelflow_common.polling.histogram.smoothed`: a hundred completions leave
gaps a plan would believe) and stored as counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from reelflow_common.polling.histogram import Histogram, bucket_of, generic_prior, smoothed
from reelflow_common.polling.plan import ClipProfile

Counts = dict[int, float]


@dataclass(frozen=True)
class ProfileCounts:
    """One profile's completion counts per bucket, with the profile they describe."""

    profile: ClipProfile
    counts: Mapping[int, float]

    @property
    def total(self) -> float:
        return sum(self.counts.values())


def profile_key(profile: ClipProfile) -> str:
    """The name a profile's counts go by; webhooks do not change how long a task takes."""
    duration = "-" if profile.duration is None else f"{profile.duration:g}s"
    size = (
        "-"
        if profile.width is None or profile.height is None
        else (f"{profile.width}x{profile.height}")
    )
    return f"{profile.model}|{duration}|{size}"


def usable_progress(progress: int) -> bool:
    """Progress a prediction may rest on: 0 says nothing, 99 is where tasks may sit."""
    return 0 < progress < 99


def stats_profile(profile: ClipProfile) -> ClipProfile:
    """The profile without what its statistics ignore (the webhooks flag)."""
    return ClipProfile(profile.model, profile.duration, profile.width, profile.height)


class CompletionBook:
    """Completion counts per profile: the shared snapshot, and this process's pending ones."""

    def __init__(self, prior_weight: float = 10.0, prior: Histogram | None = None) -> None:
        self._prior_weight = prior_weight
        self._prior = (prior or generic_prior()).normalized()
        self._shared: dict[str, ProfileCounts] = {}
        self._pending: dict[str, ProfileCounts] = {}
        self._distributions: dict[str, Histogram] = {}
        self.version = 0

    def distribution(self, profile: ClipProfile) -> Histogram:
        """The profile's completion-time distribution, from the shared snapshot."""
        key = profile_key(profile)
        cached = self._distributions.get(key)
        if cached is None:
            model = self._model_distribution(profile.model)
            own = self._shared.get(key)
            cached = model.plus(smoothed(own.counts), self._prior_weight) if own else model
            self._distributions[key] = cached
        return cached

    def _model_distribution(self, model: str) -> Histogram:
        key = f"{model}|*"
        cached = self._distributions.get(key)
        if cached is None:
            pooled: Counts = {}
            for entry in self._shared.values():
                if entry.profile.model == model:
                    for k, count in entry.counts.items():
                        pooled[k] = pooled.get(k, 0.0) + count
            cached = self._prior.plus(smoothed(pooled), self._prior_weight)
            self._distributions[key] = cached
        return cached

    def observations(self, profile: ClipProfile) -> float:
        """How many completions of exactly this profile the snapshot holds."""
        own = self._shared.get(profile_key(profile))
        return own.total if own else 0.0

    def observe(
        self,
        profile: ClipProfile,
        *,
        elapsed_s: float,
        since_s: float | None,
        since_progress: int | None = None,
    ) -> None:
        """Count one completion in ``(since_s, elapsed_s]``, or at ``elapsed_s`` exactly.

        The share of each bucket follows the generic prior's shape inside the interval,
        never the learned distribution's: that would feed on itself and pile the mass
        of wide intervals into whichever bucket straddles their ends.
        """
        if not math.isfinite(elapsed_s) or elapsed_s <= 0:
            return
        if since_s is not None and since_progress is not None and usable_progress(since_progress):
            # Linear progress says it was still running until about here; a bound past
            # the detection (progress running behind the clock) means "just now".
            since_s = max(since_s, min(elapsed_s, since_s * 100.0 / (since_progress + 1)))
        if since_s is None or not math.isfinite(since_s) or since_s >= elapsed_s:
            shares = {bucket_of(elapsed_s): 1.0}
        else:
            shares = self._prior.spread(max(0.0, since_s), elapsed_s)
        key = profile_key(profile)
        entry = self._pending.get(key)
        counts: Counts = dict(entry.counts) if entry else {}
        for k, share in shares.items():
            counts[k] = counts.get(k, 0.0) + share
        self._pending[key] = ProfileCounts(stats_profile(profile), counts)

    def take_pending(self) -> dict[str, ProfileCounts]:
        """This process's completions since the last take, handed over for writing."""
        pending, self._pending = self._pending, {}
        return pending

    def restore_pending(self, pending: Mapping[str, ProfileCounts]) -> None:
        """Give back completions whose write failed, to be written with the next ones."""
        for key, entry in pending.items():
            current = self._pending.get(key)
            counts: Counts = dict(current.counts) if current else {}
            for k, count in entry.counts.items():
                counts[k] = counts.get(k, 0.0) + count
            self._pending[key] = ProfileCounts(entry.profile, counts)

    def replace_shared(self, snapshot: Mapping[str, ProfileCounts]) -> None:
        """Plan from these counts from now on (a fresh load from MongoDB)."""
        self._shared = dict(snapshot)
        self._distributions.clear()
        self.version += 1

    def commit_pending(self) -> None:
        """Add the pending counts to the snapshot, as a write and a reload would."""
        merged = dict(self._shared)
        for key, entry in self.take_pending().items():
            current = merged.get(key)
            counts: Counts = dict(current.counts) if current else {}
            for k, count in entry.counts.items():
                counts[k] = counts.get(k, 0.0) + count
            merged[key] = ProfileCounts(entry.profile, counts)
        self.replace_shared(merged)
