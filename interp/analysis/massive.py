"""Massive activations (Sun et al. 2024, §2–3), per real model, per held-out sequence.

  massive_fraction  share of held-out sequences whose hidden state, at some depth, holds an activation with
                    |x| > 100 and |x| ≥ 1000 × the median |x| of that sequence's hidden state at that depth
                    (the paper's criterion, its code's lower median)
  ablation_delta    mean over held-out sequences of CE(massive values set to `mode`) − CE(intact), nats/token
                    per sequence; mode "mean" (each dim's mean massive value) or "zero" (table seq_ablation)
"""
from __future__ import annotations

import math

import numpy as np

from interp.analysis.intervals import NotTestable
from interp.analysis.registry import metric
from interp.analysis.sequence_tables import stream_arrays
from interp.analysis.subjects import Subject, need
from interp.analysis.units import estimate

ABS_MIN, RATIO_MIN = 100.0, 1000.0


def has_massive(top1: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Per sequence: does some depth hold |x| > ABS_MIN and ≥ RATIO_MIN × its median ([S, D] → [S] bool)."""
    return ((top1 > ABS_MIN) & (top1 >= RATIO_MIN * median)).any(1)


@metric("massive_fraction", "share of held-out sequences with an activation |x| > 100 and ≥ 1000× the median |x| "
        "of its hidden state at some depth", "Massive Activations §2 (definition, Fig. 1)")
def massive_fraction(t, subject: Subject, ref: Subject | None = None):
    """Fraction of sequences that carry a massive activation."""
    def stat(m: str, idx) -> float:
        a = stream_arrays(t, m)
        hit = has_massive(a["top1"], a["median"])
        return float(hit.mean() if idx is None else hit[idx].mean())
    n = len(stream_arrays(t, subject.models[0])["top1"])
    return estimate(stat, subject, ref, n)


@metric("ablation_delta", "mean over held-out sequences of CE with the massive activations set to their mean "
        "(or zero) − intact CE, at the depth where they appear", "Massive Activations §3 (Table: intervention)",
        "nats/token")
def ablation_delta(t, subject: Subject, ref: Subject | None = None, mode: str = "mean"):
    """Loss change under mean- or zero-ablation of the massive activations, per sequence (bootstrap)."""
    rows = need(t, "seq_ablation", subject.models, "per-sequence ablation of massive activations")
    per: dict[str, np.ndarray] = {}
    for m, g in rows.groupby("model"):
        w = g.pivot_table(index="seq", columns="ablation", values="loss", aggfunc="first").sort_index()
        if not {"none", mode} <= set(w.columns):
            raise NotTestable(f"{m}: the ablation table lacks the none / {mode} rows")
        per[m] = (w[mode] - w["none"]).to_numpy(dtype=float)

    def stat(m: str, idx) -> float:
        d = per.get(m)
        if d is None:
            return math.nan
        return float(d.mean() if idx is None else d[idx].mean())
    return estimate(stat, subject, ref, len(per[subject.models[0]]) if subject.models[0] in per else 0)
