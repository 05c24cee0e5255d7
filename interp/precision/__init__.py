"""Will a model survive fp16, bf16 and int8? End-to-end precision runs and per-model verdicts.

    from interp.precision import precision_runs, verdicts
    runs = precision_runs(model, texts)          # loss / top-1 agreement in bf16, fp16, int8 vs fp32
    verdicts(res["precision"], runs)             # one row per model: fp16-safe? where does it overflow?

The per-site statistics come from the `interp.collectors.Precision` collector (interp/collectors/precision.py).
"""
from __future__ import annotations

from interp.precision.formats import BF16_MAX, FP16_MAX, int8_absmax

__all__ = ["BF16_MAX", "FP16_MAX", "int8_absmax", "precision_runs", "verdicts"]


def __getattr__(name: str):
    if name == "precision_runs":
        from interp.precision.runs import precision_runs
        return precision_runs
    if name == "verdicts":
        from interp.precision.verdict import verdicts
        return verdicts
    raise AttributeError(f"module 'interp.precision' has no attribute {name!r}")
