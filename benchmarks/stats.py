"""The statistics every study report uses: IQM, stratified-bootstrap intervals, paired differences.

- **IQM**: the interquartile mean (the 25 % trimmed mean) of all scores, over tasks × seeds together;
- **stratified bootstrap**: `scipy.stats.bootstrap` with one sample per task, so seeds are resampled
  within each task (rliable's scheme; rliable itself does not import with pandas 3, its `arch`
  dependency fails); 95 % percentile intervals from `REPS` resamples;
- **paired differences**: two arms compared on the same (task, seed) pairs, the mean difference
  with a bootstrap interval; a verdict only from `MIN_PAIRS` pairs on, and otherwise the number of
  pairs an interval excluding 0 would take at the observed spread (`pairs_needed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

REPS = 2000
"""Bootstrap resamples per interval."""
MIN_PAIRS = 6
"""Fewest paired runs for which a report gives a bootstrap interval and a verdict."""


def iqm(*per_task: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean of all scores (the 25 % trimmed mean), over the tasks' samples together."""
    return stats.trim_mean(np.concatenate(per_task, axis=axis), 0.25, axis=axis)


def iqm_with_ci(per_task: list[np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """IQM of per-task score arrays (one score per seed) and its 95 % stratified-bootstrap percentile interval."""
    per_task = tuple(np.asarray(t, dtype=float) for t in per_task)
    point = float(iqm(*per_task))
    if min(len(t) for t in per_task) < 2:  # a task with one seed: no interval
        return point, float("nan"), float("nan")
    if np.ptp(np.concatenate(per_task)) == 0:  # nothing to resample
        return point, point, point
    ci = stats.bootstrap(per_task, iqm, n_resamples=REPS, method="percentile", rng=np.random.default_rng(seed))
    return point, float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def mean_with_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval (paired differences; no interval from one pair)."""
    if len(values) < 2:
        return float(np.mean(values)), float("nan"), float("nan")
    if np.ptp(values) == 0:
        return float(np.mean(values)), float(np.mean(values)), float(np.mean(values))
    ci = stats.bootstrap((values,), np.mean, n_resamples=REPS, method="percentile", rng=np.random.default_rng(seed))
    return float(np.mean(values)), float(ci.confidence_interval.low), float(ci.confidence_interval.high)


def pairs_needed(differences: np.ndarray) -> int:
    """Paired runs a 95 % interval would need to exclude 0 at this mean difference and spread.

    $n = \\lceil (1.96\\, s_d / |\\bar d|)^2 \\rceil$ (normal approximation; $s_d$ the sample standard deviation).
    """
    mean, spread = abs(float(np.mean(differences))), float(np.std(differences, ddof=1))
    return int(np.ceil((1.96 * spread / mean) ** 2)) if mean > 0 and spread > 0 else len(differences)


@dataclass(frozen=True)
class Paired:
    """Paired differences `a − b` over common pairs: the mean, its 95 % bootstrap interval and a verdict."""

    pairs: int
    mean: float
    low: float
    high: float
    needed: int | None
    """`pairs_needed` at this spread (None from a single pair)."""

    @property
    def enough(self) -> bool:
        """At least `MIN_PAIRS` pairs: enough for a verdict."""
        return self.pairs >= MIN_PAIRS

    @property
    def sign(self) -> int:
        """+1 when the interval lies above 0 (a ahead), −1 below it (b ahead), 0 when it holds 0 or is too short."""
        return 0 if not self.enough else 1 if self.low > 0 else -1 if self.high < 0 else 0


def paired(differences) -> Paired:
    """Mean, interval and `pairs_needed` of paired differences (same task and seed in both arms)."""
    differences = np.asarray(differences, dtype=float)
    mean, low, high = mean_with_ci(differences)
    needed = pairs_needed(differences) if len(differences) > 1 else None
    return Paired(len(differences), mean, low, high, needed)


def steps_to_reach(steps: np.ndarray, curve: np.ndarray, level: float) -> float:
    """First step at which `curve` reaches `level` (linear interpolation); `nan` if never."""
    above = np.nonzero(curve >= level)[0]
    if len(above) == 0:
        return float("nan")
    i = above[0]
    if i == 0:
        return float(steps[0])
    s0, s1, c0, c1 = steps[i - 1], steps[i], curve[i - 1], curve[i]
    return float(s0 + (level - c0) / (c1 - c0) * (s1 - s0))


def interval(low: float, high: float) -> str:
    """`[low, high]` of a 95 % interval, or a note when there is none (one seed per task)."""
    return "(no interval yet: a task with one seed)" if np.isnan(low) else f"[{low:.2f}, {high:.2f}]"
