"""Simulated int8 activations: every `nn.Linear` / `Conv1D` input (gemm.py: GPT-2's block layers are Conv1D)
fake-quantized (quantize to int8, dequantize) on the fly.

Symmetric absmax (see formats.int8_absmax): per="tensor" uses one scale per sequence (its real positions × the
linear's input dims: what a single-sequence forward hands the layer), per="token" one scale per position.
Weights stay as they are; only activations are quantized (W32A8), so the loss change measures the activations'
quantizability, which is what the normalization strategy shapes.
"""
from __future__ import annotations

from contextlib import contextmanager

from interp.precision.formats import int8_absmax
from interp.precision.gemm import gemm_modules


class MaskRef:
    """The current batch's attention mask [b, t], read by the quantizing pre-hooks."""

    mask = None


@contextmanager
def int8_linear_inputs(model, per: str = "tensor", ref: MaskRef | None = None):
    """Within the block, every nn.Linear and Conv1D of `model` sees its input fake-quantized to int8; yields the
    count."""
    ref = ref or MaskRef()

    def pre(mod, args):
        if not args:
            return None
        return (int8_absmax(args[0], per, ref.mask), *args[1:])

    handles = [m.register_forward_pre_hook(pre) for m in gemm_modules(model)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()
