"""Analysis: the metrics the seed papers' claims are judged by, their intervals, and the per-sequence
statistics that make intervals possible for single models. Importing this package registers every metric in
`METRICS` (see `interp.analysis.registry`; `interp.report.claims` says how to add a claim)."""
from __future__ import annotations

from interp.analysis import (  # noqa: F401
    architecture,
    diffusion,
    dynamics,
    effectiveness,
    entropy_neurons,
    gradients,
    growth,
    ln_free,
    loss,
    massive,
    precision,
    stability,
    timing,
    training_logs,
)
from interp.analysis.growth import growth_figures
from interp.analysis.intervals import Estimate, NotTestable
from interp.analysis.registry import METRICS, metric
from interp.analysis.sequences import SequenceStats
from interp.analysis.subjects import Subject

__all__ = ["METRICS", "Estimate", "NotTestable", "SequenceStats", "Subject", "growth_figures", "metric"]
