"""Gradient norms across layers (Mix-LN §3): how evenly the loss gradient reaches the blocks.

Per model, g_ℓ = ‖∇θ_block ℓ mean next-token CE‖₂ on held-out sequences (the `gradients` table, target params:
trained weights; `grads_init`: the same on the step-0 weights `interp.zoo.build(strategy, seed=k, **size)`).
  grad_cv          coefficient of variation of g_ℓ over the blocks, std/mean (population std): 0 = uniform
  grad_late_early  ln(mean g over the last third of the blocks / mean g over the first third)
"""
from __future__ import annotations

import math

import numpy as np

from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need
from interp.analysis.units import estimate

TABLE = {"trained": "gradients", "init": "grads_init"}


def cv(g: np.ndarray) -> float:
    """std/mean of per-layer gradient norms (population std)."""
    return float(np.std(g) / np.mean(g)) if np.mean(g) > 0 else math.nan


def late_early(g: np.ndarray) -> float:
    """ln(mean of the last third / mean of the first third) of per-layer gradient norms."""
    k = max(1, len(g) // 3)
    a, b = float(np.mean(g[:k])), float(np.mean(g[-k:]))
    return math.log(b / a) if a > 0 and b > 0 else math.nan


def _per_layer(t, subject: Subject, ref: Subject | None, when: str):
    rows = need(t, TABLE[when], subject.models + (ref.models if ref else ()),
                f"block gradient norms ({'step-0 weights' if when == 'init' else 'trained weights'})")
    if "target" in rows:
        rows = rows[rows["target"] == "params"]
    return {m: g.groupby("layer")["grad_norm"].mean().sort_index().to_numpy() for m, g in rows.groupby("model")}


@metric("grad_cv", "coefficient of variation (std/mean) of the per-block gradient norm ‖∇θ_ℓ CE‖ on held-out "
        "text", "Mix-LN §3 (uniform gradient norms across layers)")
def grad_cv(t, subject: Subject, ref: Subject | None = None, when: str = "trained"):
    """Uniformity of gradient norms across blocks; with a reference, the difference of CVs."""
    per = _per_layer(t, subject, ref, when)
    return estimate(lambda m, idx: cv(per[m]) if m in per else math.nan, subject, ref)


@metric("grad_late_early", "ln(mean gradient norm of the last third of the blocks / the first third), "
        "‖∇θ_ℓ CE‖ on held-out text", "Mix-LN §3 (Post-LN: early layers get small gradients; Pre-LN: deep ones)")
def grad_late_early(t, subject: Subject, ref: Subject | None = None, when: str = "trained"):
    """Where the gradient concentrates: > 0 late blocks, < 0 early blocks."""
    per = _per_layer(t, subject, ref, when)
    return estimate(lambda m, idx: late_early(per[m]) if m in per else math.nan, subject, ref)
