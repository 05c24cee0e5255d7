"""Streaming collectors: forward (and backward) hooks that keep small, exactly mergeable statistics.

    res = interp.collect(model, texts)                  # every forward collector
    res["residual"], res["massive"], res.save("out/")   # tidy tables, documented in docs/results.md
"""
from __future__ import annotations

from interp.collectors.attn_logits import AttnLogits
from interp.collectors.base import Batch, Collector, NonFiniteError, TopK, merge_states
from interp.collectors.effect import LayerEffect
from interp.collectors.grads import GradNorms
from interp.collectors.massive import MassiveActivations
from interp.collectors.precision import Precision
from interp.collectors.residual import ResidualStats
from interp.collectors.scales import NormScales
from interp.collectors.results import Results
from interp.collectors.api import collect
from interp.collectors.driver import default_collectors, run_batches

__all__ = ["Batch", "Collector", "NonFiniteError", "TopK", "merge_states", "ResidualStats", "MassiveActivations", "GradNorms",
           "LayerEffect", "NormScales", "Precision", "AttnLogits", "Results",
           "collect", "default_collectors", "run_batches"]

