"""Streaming collectors: forward (and backward) hooks that keep small, exactly mergeable statistics.

    res = interp.collect(model, texts)                  # every forward collector
    res["residual"], res["massive"], res.save("out/")   # tidy tables, documented in docs/results.md
"""
from __future__ import annotations

import sys
import types

from interp.collect.base import Batch, Collector, NonFiniteError, TopK, merge_states
from interp.collect.effect import LayerEffect
from interp.collect.grads import GradNorms
from interp.collect.massive import MassiveActivations
from interp.collect.precision import Precision
from interp.collect.residual import ResidualStats
from interp.collect.scales import NormScales
from interp.collect.results import Results
from interp.collect.driver import collect, default_collectors, run_batches

__all__ = ["Batch", "Collector", "NonFiniteError", "TopK", "merge_states", "ResidualStats", "MassiveActivations", "GradNorms",
           "LayerEffect", "NormScales", "Precision", "Results",
           "collect", "default_collectors", "run_batches"]


class _CallableModule(types.ModuleType):
    """Lets `interp.collect(model, data, ...)` call `collect` while `interp.collect` stays the package."""

    def __call__(self, *args, **kwargs) -> Results:
        from interp.collect.sharded import SCALE_OPTIONS, collect_sharded
        from interp.collect.stream import is_stream
        data = args[1] if len(args) > 1 else kwargs.get("data")
        if SCALE_OPTIONS & kwargs.keys() or is_stream(data):  # distributed / device / streaming / resumable
            return collect_sharded(*args, **kwargs)
        return collect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
