"""95 % intervals for claim metrics, and the `Estimate` every metric returns.

Two sources of uncertainty, chosen by what was measured:
  seeds      ≥ 2 seeds of a strategy: a Student-t interval of the mean over seeds (n − 1 degrees of freedom);
             a difference between two strategies: Welch's t interval (Welch–Satterthwaite degrees of freedom).
             Seed-to-seed spread is the spread that matters for "strategy A does X more than strategy B".
  sequences  one seed (or a real model): a percentile bootstrap over held-out sequences (B = 1000 resamples,
             fixed generator seed), the statistic recomputed on each resample; paired (same resampled
             sequences for both sides) when a single-seed model is compared with a reference.
  ranks      a discrete per-seed outcome (ladder rungs), where identical seeds would give a t interval of width
             0: a distribution-free interval for the median from order statistics (the sign test's), which
             needs ≥ 6 seeds at 95 %; with fewer there is no interval.
A measurement with no sampling in it (a parameter count, a float64 equivalence) is "exact": lo = hi = value.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from interp.analysis.stats import t_quantile

LEVEL = 0.95
N_BOOT = 1000


class NotTestable(Exception):
    """The numbers a metric needs are absent, or the model cannot show the effect; the message says which."""


@dataclass
class Estimate:
    """A metric's value for one subject, with its 95 % interval (NaN when there is none) and how it was made.

    units: the per-seed values the interval was built from (empty for bootstrap / exact); control_gap: how far
    two controls that should agree differ (same unit as value), when the metric has such controls.
    """

    value: float
    lo: float = math.nan
    hi: float = math.nan
    method: str = "no interval"
    n: int = 0
    units: list[float] = field(default_factory=list)
    detail: str = ""
    control_gap: float | None = None

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


def exact(value: float, detail: str = "") -> Estimate:
    """A measurement without sampling noise (a count, a float64 comparison): the interval is the value."""
    return Estimate(float(value), float(value), float(value), "exact (no sampling)", 1, [], detail)


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval of the mean of `values` (≥ 2 finite values)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or not np.isfinite(v).all():
        raise ValueError(f"a t interval needs ≥ 2 finite values, got {v.tolist()}")
    m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))
    h = t_quantile(0.5 + level / 2, len(v) - 1) * se
    return m, m - h, m + h


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean(a) − mean(b), lo, hi): Welch's t interval for a difference of means (each side ≥ 2 values)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's interval needs ≥ 2 values per side, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = t_quantile(0.5 + level / 2, df) * se
    return d, d - h, d + h


def bootstrap_interval(stat: Callable[[np.ndarray], float], n_items: int, level: float = LEVEL,
                       n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap: (lo, hi) of stat(idx) over `n_boot` resamples idx of range(n_items) with
    replacement. Resamples on which the statistic is undefined (NaN) are dropped; fewer than half left → NaN."""
    if n_items < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_items, size=(n_boot, n_items))
    vals = np.array([stat(i) for i in idx], dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) < n_boot / 2:
        return math.nan, math.nan
    q = (1 - level) / 2
    return float(np.quantile(vals, q)), float(np.quantile(vals, 1 - q))


def over_seeds(values: Sequence[float], names: Sequence[str] = ()) -> Estimate:
    """Estimate of the mean over seeds with a t interval (one seed, or a seed whose value is not finite: the mean
    of the finite values, no interval, so the verdict is inconclusive whichever seed failed)."""
    v = [float(x) for x in values]
    if len(v) >= 2 and all(map(math.isfinite, v)):
        m, lo, hi = t_interval(v)
        return Estimate(m, lo, hi, f"t over {len(v)} seeds", len(v), v)
    ok = [x for x in v if math.isfinite(x)]
    if len(ok) < len(v):  # whichever seed failed, the same outcome: the finite seeds' mean, no interval
        return Estimate(float(np.mean(ok)) if ok else math.nan, n=len(v), units=v,
                        method=f"{len(v) - len(ok)} of {len(v)} seeds not finite: no interval")
    return Estimate(v[0] if v else math.nan, method="one seed: no interval", n=len(v), units=v)


def median_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(median, lo, hi): the distribution-free interval (x_(k), x_(n+1-k)) with the largest k whose coverage
    1 − 2·P(Binomial(n, ½) ≤ k − 1) is ≥ `level`; NaN bounds when even (min, max) covers less (n < 6 at 95 %)."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0 or not np.isfinite(v).all():
        raise ValueError(f"a median interval needs finite values, got {v.tolist()}")
    lo = hi = math.nan
    tail = 0.0  # P(Binomial(n, ½) ≤ k − 1)
    for k in range(1, n // 2 + 1):
        tail += math.comb(n, k - 1) / 2 ** n
        if 1 - 2 * tail < level:
            break
        lo, hi = float(v[k - 1]), float(v[n - k])
    return float(np.median(v)), lo, hi


def median_over_seeds(values: Sequence[float]) -> Estimate:
    """Estimate of the median of a discrete per-seed outcome with `median_interval` (no interval with fewer than
    6 seeds, or a seed that is not finite): identical seeds do not make a zero-width interval."""
    v = [float(x) for x in values]
    if not v or not all(map(math.isfinite, v)):
        return over_seeds(v)  # its outcome for a missing or non-finite seed: no interval
    m, lo, hi = median_interval(v)
    method = (f"median over {len(v)} seeds, order-statistic interval" if math.isfinite(lo) else
              f"median over {len(v)} seeds: a distribution-free 95 % interval needs ≥ 6 seeds, no interval")
    return Estimate(m, lo, hi, method, len(v), v)


def diff_over_seeds(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Estimate of mean(a) − mean(b) over seeds with Welch's interval (either side with one seed: none)."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) >= 2 and len(b) >= 2 and all(map(math.isfinite, a + b)):
        d, lo, hi = welch_interval(a, b)
        return Estimate(d, lo, hi, f"Welch t, {len(a)} vs {len(b)} seeds", len(a) + len(b), a + b)
    fa, fb = [x for x in a if math.isfinite(x)], [x for x in b if math.isfinite(x)]
    d = (float(np.mean(fa)) - float(np.mean(fb))) if fa and fb else math.nan
    bad = len(a) + len(b) - len(fa) - len(fb)
    method = f"{bad} of {len(a) + len(b)} seeds not finite: no interval" if bad else "one seed: no interval"
    return Estimate(d, method=method, n=len(a) + len(b), units=a + b)
