"""Streaming collectors: forward (and backward) hooks that keep small, exactly mergeable statistics.

    res = interp.collect(model, texts)                  # every forward collector
    res["residual"], res["massive"], res.save("out/")   # tidy tables, documented in docs/results.md
"""
from __future__ import annotations

from interp.collect.base import Batch, Collector, NonFiniteError, TopK, merge_states
from interp.collect.residual import ResidualStats
from interp.collect.results import Results
from interp.collect.driver import collect, default_collectors, run_batches

__all__ = ["Batch", "Collector", "NonFiniteError", "TopK", "merge_states", "ResidualStats", "Results",
           "collect", "default_collectors", "run_batches"]
