"""Validation loss per model, measured in the report run on held-out tokens (every seed).

  val_loss  mean next-token cross-entropy (nats/token) over the predicted tokens of the held-out sequences,
            pooled: Σ CE / Σ tokens. With a reference: the difference subject − reference.
"""
from __future__ import annotations

import numpy as np

from interp.analysis.registry import metric
from interp.analysis.sequence_tables import loss_arrays, n_shared
from interp.analysis.subjects import Subject
from interp.analysis.units import estimate


def pooled_ce(t, model: str, idx: np.ndarray | None = None) -> float:
    """Σ CE / Σ predicted tokens of `model` over sequences idx (all when None)."""
    s, n = loss_arrays(t, model)
    if idx is not None:
        s, n = s[idx], n[idx]
    return float(s.sum() / n.sum())


@metric("val_loss", "mean next-token CE on held-out tokens (validation books), Σ CE / Σ tokens",
        "the papers' validation loss / perplexity", "nats/token")
def val_loss(t, subject: Subject, ref: Subject | None = None):
    """Validation loss; with a reference, the difference of losses."""
    models = subject.models + (ref.models if ref else ())
    for m in models:
        loss_arrays(t, m)  # NotTestable when absent
    return estimate(lambda m, idx: pooled_ce(t, m, idx), subject, ref, n_shared(t, models, "seq_loss"))
