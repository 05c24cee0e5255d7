"""The number formats a model may be deployed in, and the simulated (fake) int8 quantizer.

fp16 (IEEE half): max 65504; a value rounds to inf from |x| ≥ 65520 (65504 + half an ulp, round-to-nearest-
even), and to 0 when 0 < |x| ≤ 2⁻²⁵ (half the smallest subnormal 2⁻²⁴). bf16: fp32's range (max ≈ 3.39e38)
with 8 significant bits. int8: symmetric absmax, q(x) = s · round(x / s) with s = max |x| / 127 over the
quantized group — a whole tensor (here: one sequence's tokens × dims) or one token's d values.
"""
from __future__ import annotations

import torch

FP16_MAX = 65504.0                 # largest finite fp16
FP16_OVERFLOW = 65520.0            # smallest |x| that rounds to inf in fp16
FP16_FLUSH = 2.0 ** -25            # largest |x| that rounds to 0 in fp16 (smallest subnormal: 2⁻²⁴)
FP16_MIN_NORMAL = 2.0 ** -14
BF16_MAX = float(torch.finfo(torch.bfloat16).max)
INT8_MAX = 127.0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def seq_index(mask: torch.Tensor) -> torch.Tensor:
    """The sequence (row) each counted position belongs to: [n] for mask [b, t] (row-major order)."""
    return torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]


def int8_absmax(x: torch.Tensor, per: str = "tensor", mask: torch.Tensor | None = None) -> torch.Tensor:
    """x [b, t, ...] fake-quantized to symmetric int8 and back (same dtype and shape). per="token": one scale
    per position (over its trailing dims); per="tensor": one scale per sequence, over its positions where `mask`
    [b, t] is True (all when None), so padding never sets a scale. A tensor with fewer than 3 dims, or whose
    leading dims do not match `mask`, is one group. An all-zero group stays zero."""
    if per not in ("tensor", "token"):
        raise ValueError(f"per must be 'tensor' or 'token', got {per!r}")
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if work.dim() < 3 or (mask is not None and tuple(mask.shape) != tuple(work.shape[:2])):
        a = work.detach().abs().amax().reshape([1] * work.dim())
    else:
        a = work.detach().abs().flatten(2).amax(-1)  # [b, t]
        if per == "tensor":
            if mask is not None:
                a = a.masked_fill(~mask.to(a.device), 0)
            a = a.amax(1, keepdim=True)  # [b, 1]
        a = a.reshape(*a.shape, *([1] * (work.dim() - 2)))
    s = a / INT8_MAX
    s = torch.where(s > 0, s, torch.ones_like(s))
    return (torch.round(work / s).clamp(-INT8_MAX, INT8_MAX) * s).to(x.dtype)
