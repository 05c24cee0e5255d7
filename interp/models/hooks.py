"""Driving TransformerLens `HookPoint`s from PyTorch hooks on a transformers model's own submodules.

A HookPoint is only *called* when something is attached to it, so an unobserved forward costs a few Python
attribute checks per layer on top of the plain transformers forward. When a hook returns a new tensor the
PyTorch hook returns it too, so edits write back into the model's computation.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.norms.base import observed as base_observed


def observed(hp: HookPoint) -> bool:
    """Whether anything (a forward or a backward hook) is attached to `hp` (`interp.norms.base.observed`)."""
    return base_observed(hp)


def fire(hp: HookPoint, x: torch.Tensor) -> torch.Tensor:
    """Pass `x` through `hp` when it is observed (its hooks may replace `x`); otherwise return `x` untouched."""
    return hp(x) if observed(hp) else x


def on_input(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Forward pre-hook on `module` that maps its first input (positional or `hidden_states=`) through `fn`."""
    def pre(mod, args, kwargs):
        if args:
            y = fn(args[0])
            return (y, *args[1:]), kwargs
        y = fn(kwargs["hidden_states"])
        return args, {**kwargs, "hidden_states": y}
    return module.register_forward_pre_hook(pre, with_kwargs=True)


def on_output(module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Forward hook on `module` that maps its output (or the first element of a tuple output) through `fn`."""
    def post(mod, args, out):
        if isinstance(out, tuple):
            y = fn(out[0])
            return out if y is out[0] else (y, *out[1:])
        return fn(out)
    return module.register_forward_hook(post)
