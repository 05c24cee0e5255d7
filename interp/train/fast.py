"""The cheaper training step: fused AdamW and a compiled (torch.compile, inductor) loss forward + backward.

Neither changes what is computed, only how: the fused AdamW kernel applies the same update as the for-loop
implementation, and inductor fuses the element-wise work of the forward and backward (norms, GELU, residual
adds, the softmax of the cross-entropy) into fewer loops over memory. Both round differently from the eager
path, so losses agree to float32 rounding, not bitwise (tests/test_train_fast.py bounds the difference).

The compiled path is used only where it is valid:
  - batch-statistic norms (PowerNorm, Unified Norm) update running buffers in their forward and in their custom
    backward and branch on a Python int of their step counter; those models train eagerly;
  - inductor needs a C++ compiler; without one (or if compilation fails on the first step) the run says so in
    one line on stderr and trains eagerly.
Random draws inside a compiled loss (MDLM's t and masks) use the eager generator (`fallback_random`), so the
global RNG stream, and with it resume, is the eager one.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch
from torch import nn


def adamw(param_groups: list[dict], fused: bool, **kw) -> torch.optim.AdamW:
    """AdamW over `param_groups`; fused=True: the fused kernel (CPU or CUDA) where every parameter allows it."""
    params = [p for g in param_groups for p in g["params"]]
    ok = fused and params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(param_groups, **kw, **({"fused": True} if ok else {}))


def why_not_compiled(model: nn.Module) -> str | None:
    """Why `model`'s training step cannot be compiled here (one phrase), or None when it can."""
    kinds = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "last_x2")})
    if kinds:
        return (f"batch-statistic norms ({', '.join(kinds)}) update their statistics in a custom backward; "
                "training eagerly")
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()
    except Exception as e:  # noqa: BLE001 - inductor raises its own InvalidCxxCompiler (or fails to import)
        return (f"torch.compile needs a C++ compiler and found none ({type(e).__name__}); set CXX or install g++; "
                "training eagerly")
    return None


def _inductor(fn: Callable) -> Callable:
    """`fn` compiled with inductor for fixed shapes, drawing random numbers as eager code does."""
    return torch.compile(fn, dynamic=False, options={"fallback_random": True})


class CompiledLoss:
    """`loss_fn(model, batch, use_cond)` compiled with inductor on the first call; eager if it cannot be.

    `compiled` says which path the last call took. A failure while compiling (the first call) is reported in one
    line and the step is run eagerly, as is every later one; a failure after that propagates."""

    def __init__(self, loss_fn: Callable, model: nn.Module, enabled: bool = True):
        self.loss_fn = loss_fn
        why = why_not_compiled(model) if enabled else None
        if why is not None:
            print(f"interp train: not compiled: {why}", file=sys.stderr)
        self._fn = _inductor(loss_fn) if enabled and why is None else None
        self._first = True
        self.compiled = False

    def __call__(self, model: nn.Module, batch, use_cond: bool) -> torch.Tensor:
        if self._fn is None:
            self.compiled = False
            return self.loss_fn(model, batch, use_cond)
        if not self._first:
            self.compiled = True
            return self._fn(model, batch, use_cond)
        self._first = False
        rng = torch.get_rng_state()
        from torch._dynamo.utils import counters
        tried, ok = counters["frames"]["total"], counters["frames"]["ok"]
        try:
            out = self._fn(model, batch, use_cond)
        except Exception as e:  # noqa: BLE001 - any compiler failure: train eagerly instead
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            print(f"interp train: torch.compile failed ({type(e).__name__}: {msg}); training eagerly",
                  file=sys.stderr)
            self._fn = None
            torch.set_rng_state(rng)
            self.compiled = False
            return self.loss_fn(model, batch, use_cond)
        # dynamo tried to compile and compiled nothing (e.g. its recompile limit, reached by a process that compiled
        # many models): it ran eagerly. No attempt at all is a hit on code compiled for an earlier model.
        if counters["frames"]["total"] > tried and counters["frames"]["ok"] == ok:
            print("interp train: not compiled: torch.compile compiled nothing (dynamo's recompile limit?); "
                  "training eagerly", file=sys.stderr)
            self._fn = None
            return out
        self.compiled = True
        return out
