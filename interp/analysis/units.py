"""Turn a per-model statistic into an Estimate for a subject (and a reference): across seeds when there are
seeds, by a bootstrap over held-out sequences otherwise (see `interp.analysis.intervals`).

A statistic is `stat(model, idx) -> float`: its value on model `model` computed from the held-out sequences
`idx` (an index array into the sequences every model shares, with repeats under resampling), or from all of
them when idx is None. A statistic that cannot be resampled (a training log, a timing) is called with None only.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from interp.analysis.intervals import Estimate, bootstrap_interval, diff_over_seeds, over_seeds
from interp.analysis.subjects import Subject

Stat = Callable[[str, "np.ndarray | None"], float]


def _mean(stat: Stat, models: tuple[str, ...], idx: np.ndarray | None) -> float:
    return float(np.mean([stat(m, idx) for m in models]))


def estimate(stat: Stat, subject: Subject, ref: Subject | None = None, n_seqs: int = 0) -> Estimate:
    """stat on `subject` (mean over its seeds) minus the same on `ref` when given, with a 95 % interval.

    ≥ 2 seeds on every side: t (or Welch) interval over seeds. Otherwise, with `n_seqs` ≥ 2 shared held-out
    sequences: percentile bootstrap over them (paired: each resample is used for both sides, the reference
    averaged over its seeds). Otherwise the point value with no interval."""
    seeds_ok = len(subject.models) >= 2 and (ref is None or len(ref.models) >= 2)
    if seeds_ok:
        a = [stat(m, None) for m in subject.models]
        if ref is None:
            return over_seeds(a)
        return diff_over_seeds(a, [stat(m, None) for m in ref.models])

    def f(idx: np.ndarray | None) -> float:
        v = _mean(stat, subject.models, idx)
        return v - _mean(stat, ref.models, idx) if ref is not None else v

    value = f(None)
    if n_seqs >= 2 and math.isfinite(value):
        lo, hi = bootstrap_interval(f, n_seqs)
        how = f"bootstrap over {n_seqs} held-out sequences" + (" (paired)" if ref is not None else "")
        if subject.kind == "zoo":
            few = [s for s in (subject, ref) if s is not None and len(s.models) < 2]
            how += f"; {' and '.join(s.label for s in few)} with one seed: seed spread not included"
        return Estimate(value, lo, hi, how, n_seqs)
    one = "one seed" if subject.kind == "zoo" else "one model"
    why = f"{one} and no per-sequence numbers: no interval" if len(subject.models) < 2 else "no interval"
    return Estimate(value, method=why, n=len(subject.models))
