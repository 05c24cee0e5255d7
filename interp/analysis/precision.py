"""fp16 headroom (claim `fp16_headroom`): how far a model's largest activation stays below fp16's largest value.

headroom = log10(65504 / max |x|), the max over every residual site the Precision collector reads (the stream,
each sublayer's output, each norm's input: a Post-LN block's un-normalized sum counts, not only the normalized
stream it carries) and every held-out token. Negative: the model overflows fp16 somewhere. Between strategies:
the difference in decades, per seed, with Welch's interval over seeds (`interp.analysis.units.estimate`).
"""
from __future__ import annotations

import math

from interp.analysis.intervals import NotTestable
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need
from interp.analysis.units import estimate
from interp.precision.formats import FP16_MAX


@metric("fp16_headroom", "log10(65504 / max |x|) over every residual site (stream, sublayer outputs, norm inputs) "
        "and held-out token; with a reference, the difference (decades of headroom gained)",
        "IEEE 754 binary16 range (max 65504); Sun et al. 2024 (massive activations), Kim et al. 2025 (Peri-LN)",
        "decades")
def fp16_headroom(t, subject: Subject, ref: Subject | None = None):
    """Decades between the model's largest |activation| and fp16's max (minus the reference's)."""
    models = subject.models + (ref.models if ref is not None else ())
    rows = need(t, "precision", models, "per-site precision statistics (Precision collector)")
    peak = rows.groupby("model")["abs_max"].agg(lambda s: s.max(skipna=False))  # a NaN site: no headroom known
    missing = [m for m in models if m not in peak.index]
    if missing:
        raise NotTestable(f"no per-site precision statistics for {', '.join(missing)}")
    if (peak[list(models)] <= 0).any():
        raise NotTestable("every activation is zero: no headroom to measure")
    est = estimate(lambda m, idx: math.log10(FP16_MAX / float(peak[m])), subject, ref, 0)
    est.detail = "max |x|: " + ", ".join(f"{m} {float(peak[m]):.3g}" for m in models)
    return est
