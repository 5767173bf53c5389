"""Completion times as a histogram on log-spaced buckets, and the generic prior.

Bucket ``k`` holds times in ``[2**(k/16), 2**((k+1)/16))`` seconds: 16 buckets per
doubling (4.4 % wide) from 2**-8 s (3.9 ms, bucket -128) to 2**14 s (4.5 h, bucket
223); anything shorter counts in the first bucket, anything longer in the last. The
scheme is fixed, so bucket numbers can be shared counters in MongoDB. Inside a
bucket, mass is spread evenly in ``log t``.

Why below a second, when no video is that fast: a stack whose schedule settings are
compressed (the simulator's speedup, ``make bench``) must be able to learn and plan
its own time scale. Until 2026-12-03 the first bucket started at 1 s (bucket 0, with
everything shorter in it); the numbers of buckets from 1 s up did not change, and
the few sub-second completions stored in bucket 0 before then stay there.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

BUCKETS_PER_DOUBLING = 16
#: The first bucket's number (2**-8 s) and the number one past the last (2**14 s).
FIRST_BUCKET = -BUCKETS_PER_DOUBLING * 8
END_BUCKET = BUCKETS_PER_DOUBLING * 14
N_BUCKETS = END_BUCKET - FIRST_BUCKET
_MIN_S = 2.0 ** (FIRST_BUCKET / BUCKETS_PER_DOUBLING)
_MAX_S = 2.0 ** (END_BUCKET / BUCKETS_PER_DOUBLING)

#: The generic prior for a model nobody has observed yet: log-normal, median 110 s,
#: sigma 0.7 (5-95 % ≈ 35-350 s, 99.5 % ≈ 10 min). From public reports of Runware
#: video generation (about 40 s to 5 min, a tail to about 10 min under load), not
#: from any measurement of ours; observations replace it.
PRIOR_MEDIAN_S = 110.0
PRIOR_SIGMA = 0.7

#: Learned counts are smoothed with twice the bandwidth of Silverman's rule (see
#: :func:`smoothed`).
OVERSMOOTHING = 2.0


def edge(k: int) -> float:
    """Lower edge of bucket ``k`` in seconds (``edge(END_BUCKET)`` is the top)."""
    return float(2.0 ** (k / BUCKETS_PER_DOUBLING))


def bucket_of(seconds: float) -> int:
    """The bucket that counts a completion ``seconds`` after submission."""
    if seconds < _MIN_S:
        return FIRST_BUCKET
    return min(END_BUCKET - 1, math.floor(BUCKETS_PER_DOUBLING * math.log2(seconds)))


def _position(seconds: float) -> float:
    """Continuous bucket coordinate: ``k + fraction`` of the way through bucket ``k``."""
    if seconds <= _MIN_S:
        return float(FIRST_BUCKET)
    if seconds >= _MAX_S:
        return float(END_BUCKET)
    return BUCKETS_PER_DOUBLING * math.log2(seconds)


def _index(k: int) -> int:
    """Where bucket ``k`` sits in ``Histogram.masses``."""
    if not FIRST_BUCKET <= k < END_BUCKET:
        raise ValueError(f"no bucket {k}: buckets are {FIRST_BUCKET} to {END_BUCKET - 1}")
    return k - FIRST_BUCKET


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class Histogram:
    """A distribution of completion times; ``masses`` need not sum to one.

    ``masses[i]`` is bucket ``FIRST_BUCKET + i``.
    """

    masses: tuple[float, ...]
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.masses) != N_BUCKETS:
            raise ValueError(f"a histogram has {N_BUCKETS} buckets, not {len(self.masses)}")
        if any(m < 0 or not math.isfinite(m) for m in self.masses) or sum(self.masses) <= 0:
            raise ValueError("bucket masses must be finite, non-negative and not all zero")
        running, cumulative = 0.0, [0.0]
        for mass in self.masses:
            running += mass
            cumulative.append(running)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @classmethod
    def from_counts(cls, counts: Mapping[int, float]) -> Histogram:
        masses = [0.0] * N_BUCKETS
        for k, count in counts.items():
            masses[_index(k)] += count
        return cls(tuple(masses))

    @classmethod
    def log_normal(cls, median_s: float, sigma: float) -> Histogram:
        """``median * exp(sigma * N(0, 1))``, with both tails folded into the end buckets."""
        mu = math.log(median_s)
        cdfs = [
            _normal_cdf((math.log(edge(k)) - mu) / sigma)
            for k in range(FIRST_BUCKET, END_BUCKET + 1)
        ]
        cdfs[0], cdfs[-1] = 0.0, 1.0
        return cls(tuple(max(0.0, hi - lo) for lo, hi in itertools.pairwise(cdfs)))

    @property
    def total(self) -> float:
        return self._cumulative[-1]

    def normalized(self) -> Histogram:
        total = self.total
        return Histogram(tuple(m / total for m in self.masses))

    def plus(self, counts: Mapping[int, float], prior_weight: float) -> Histogram:
        """``counts`` with this distribution, scaled to ``prior_weight`` observations, added."""
        scale = prior_weight / self.total
        masses = [m * scale for m in self.masses]
        for k, count in counts.items():
            masses[_index(k)] += count
        return Histogram(tuple(masses))

    def cdf(self, seconds: float) -> float:
        """P(completion ≤ seconds)."""
        position = _position(seconds) - FIRST_BUCKET
        i = min(N_BUCKETS - 1, int(position))
        below = self._cumulative[i] + self.masses[i] * (position - i)
        return min(1.0, below / self.total)

    def quantile(self, q: float) -> float:
        """The smallest time by which a fraction ``q`` of completions are done."""
        target = min(max(q, 0.0), 1.0) * self.total
        i = min(N_BUCKETS - 1, max(0, bisect_right(self._cumulative, target) - 1))
        while i > 0 and self.masses[i] == 0 and self._cumulative[i] >= target:
            i -= 1
        mass = self.masses[i]
        fraction = 0.0 if mass == 0 else min(1.0, (target - self._cumulative[i]) / mass)
        return float(2.0 ** ((FIRST_BUCKET + i + fraction) / BUCKETS_PER_DOUBLING))

    def spread(self, after_s: float, until_s: float) -> dict[int, float]:
        """One completion known to lie in ``(after_s, until_s]``, split over the buckets
        in proportion to this distribution there (one step of the EM estimate for
        interval-censored data); evenly in ``log t`` where the distribution is empty."""
        lo, hi = _position(max(0.0, after_s)), _position(until_s)
        if hi <= lo:
            return {bucket_of(until_s): 1.0}
        shares: dict[int, float] = {}
        for k in range(math.floor(lo), min(END_BUCKET - 1, math.floor(hi)) + 1):
            overlap = min(hi, k + 1.0) - max(lo, float(k))
            if overlap > 0:
                shares[k] = overlap
        weighted = {k: share * self.masses[_index(k)] for k, share in shares.items()}
        total = sum(weighted.values())
        if total <= 0:
            weighted, total = shares, sum(shares.values())
        return {k: w / total for k, w in weighted.items() if w > 0}


def generic_prior(median_s: float = PRIOR_MEDIAN_S) -> Histogram:
    """The prior of a model with no observations (see :data:`PRIOR_MEDIAN_S`); the
    services take ``median_s`` from ``poll_prior_median_s``."""
    return Histogram.log_normal(median_s, PRIOR_SIGMA)


def smoothed(counts: Mapping[int, float]) -> dict[int, float]:
    """``counts`` spread by a Gaussian kernel in log time, narrower the more there are.

    A plan believes the gaps of its distribution: between two observed completions it
    spaces checks as far apart as the late budget allows, and a sample of a hundred
    leaves gaps where the next clips will finish. The kernel's width is
    :data:`OVERSMOOTHING` times Silverman's rule of thumb, ``0.9 · min(sd, IQR / 1.349)
    · n^(-1/5)`` (in buckets, so in log time): the rule minimises the density's error,
    while a plan pays far more for a distribution too narrow (clips seen late) than
    for one too wide (a check more), and a polled completion's count is blurred already
    (spread over the interval between two checks). The kernel is cut at
    three widths and scaled to sum to one there. Mass it carries past either end of
    the buckets stays in the end bucket.

    Cost: per bucket counted, one pass over the kernel's weights that land inside the
    buckets, at most ``N_BUCKETS`` of them (what a kernel reaches beyond goes to the
    end buckets at once): 0.4 ms for a profile's counts, 5-7 ms at worst.
    """
    total = sum(counts.values())
    if total <= 1.0:
        return dict(counts)
    width = OVERSMOOTHING * 0.9 * _spread_in_buckets(counts, total) * total**-0.2
    reach = math.floor(3.0 * width)
    if reach < 1:
        return dict(counts)
    full = [math.exp(-0.5 * (d / width) ** 2) for d in range(-reach, reach + 1)]
    norm = sum(full)
    # No two buckets are more than N_BUCKETS - 1 apart: whatever lies further out on
    # either side ends in the same end bucket as the kernel's last weight kept.
    kept = min(reach, N_BUCKETS - 1)
    cut = reach - kept
    kernel = [w / norm for w in full[cut : len(full) - cut]]
    kernel[0] += sum(full[:cut]) / norm
    kernel[-1] += sum(full[len(full) - cut :]) / norm
    before = [0.0, *itertools.accumulate(kernel)]  # before[m]: kernel[:m]'s weight
    masses = [0.0] * N_BUCKETS
    for k, count in counts.items():
        i = _index(k)
        # kernel[m] falls on bucket index i + m - kept; keep those inside [0, N_BUCKETS).
        lo, hi = max(0, kept - i), min(len(kernel), N_BUCKETS + kept - i)
        start = i + lo - kept
        masses[start : start + hi - lo] = [
            mass + count * weight
            for mass, weight in zip(masses[start : start + hi - lo], kernel[lo:hi], strict=True)
        ]
        masses[0] += count * before[lo]
        masses[-1] += count * (before[-1] - before[hi])
    return {FIRST_BUCKET + j: mass for j, mass in enumerate(masses) if mass > 0}


def _spread_in_buckets(counts: Mapping[int, float], total: float) -> float:
    """``min(sd, IQR / 1.349)`` of the bucket numbers (the standard deviation when the
    quartiles share a bucket)."""
    mean = sum(k * c for k, c in counts.items()) / total
    sd = math.sqrt(sum(c * (k - mean) ** 2 for k, c in counts.items()) / total)
    ordered = sorted(counts.items())
    cumulative = list(itertools.accumulate(c for _, c in ordered))

    def quantile(q: float) -> int:
        i = bisect_right(cumulative, q * total)
        return ordered[min(i, len(ordered) - 1)][0]

    iqr = (quantile(0.75) - quantile(0.25)) / 1.349
    return min(sd, iqr) if iqr > 0 else sd
