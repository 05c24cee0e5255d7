"""Token-wise norms: LayerNorm, RMSNorm, CRMSNorm (Jiang et al. 2023) and FakeLN (frozen scale, LN removal)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interp.norms.base import Norm, observed


def _accumulate(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    """(x in at least float32, the output dtype): the hooked path computes bf16 / fp16 statistics in float32 and
    rounds once at the end, as the fused kernels do, so observing hook_scale does not change the output (in
    fp16, x² overflowed for |x| > 256 and the token came out as zeros)."""
    return x.to(torch.promote_types(x.dtype, torch.float32)), torch.promote_types(x.dtype, w.dtype)


class LayerNorm(Norm):
    """y = (x − mean) / sqrt(var + eps) · w + b, statistics over d_model for each token."""

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(d, eps)
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        # the fused kernel (same function) unless the scale is hooked or x has another dtype (promoted below)
        if x.dtype == self.w.dtype and not observed(self.hook_scale):
            return self.hook_normalized(F.layer_norm(x, (self.d,), self.w, self.b, self.eps))
        x, out = _accumulate(x, self.w)
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # [b, t, 1]
        y = x / scale * self.w.to(x.dtype)
        return self.hook_normalized((y if self.b is None else y + self.b.to(x.dtype)).to(out))


class RMSNorm(Norm):
    """y = x / sqrt(mean(x²) + eps) · w (no centring, no bias)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__(d, eps)
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        if x.dtype == self.w.dtype and not observed(self.hook_scale):  # fused; a mixed dtype is promoted as below
            return self.hook_normalized(F.rms_norm(x, (self.d,), self.w, self.eps))
        x, out = _accumulate(x, self.w)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # [b, t, 1]
        return self.hook_normalized((x / scale * self.w.to(x.dtype)).to(out))


class CRMSNorm(Norm):
    """Compressed RMSNorm on a d-dimensional stream that stores only the first d of a (d+1)-dim zero-mean vector.

    The dropped coordinate is −Σx, so Σ over all d+1 coordinates of x² is Σx² + (Σx)²:
    y = x / sqrt((Σx² + (Σx)²) / (d + 1) + eps) · w. On the kept coordinates of a zero-mean vector this
    equals LayerNorm of the full vector (Jiang et al. 2023, "Pre-RMSNorm and Pre-CRMSNorm Transformers").
    Here `d` is the *stored* width (the model width); the implied full width is d + 1.
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__(d, eps)
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        ms = (x.pow(2).sum(-1, keepdim=True) + x.sum(-1, keepdim=True).pow(2)) / (self.d + 1)
        scale = self.hook_scale((ms + self.eps).sqrt())  # [b, t, 1]
        return self.hook_normalized(x / scale * self.w)


class FakeLN(Norm):
    """LayerNorm whose divisor is a frozen constant (the running average of the real LN's per-token std).

    Used by LN removal (Heimersheim 2024): y = (x − mean) / σ_avg · w + b. A separate σ for position 0
    (`scale_pos0`) can be kept until the last removal stage, since the first token's std differs greatly.
    `centre=False` turns it into a pure linear rescaling. With `scale_pos0` unset all positions share σ_avg.
    """

    def __init__(self, d: int, scale: float = 1.0, scale_pos0: float | None = None, bias: bool = True,
                 centre: bool = True):
        super().__init__(d, 0.0)
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d)) if bias else None
        self.centre = centre
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("scale_pos0", torch.tensor(float("nan") if scale_pos0 is None else float(scale_pos0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        if self.centre:
            x = x - x.mean(-1, keepdim=True)
        scale = self.scale.to(x.dtype).expand(*x.shape[:-1], 1)  # [b, t, 1]
        if not torch.isnan(self.scale_pos0):
            scale = scale.clone()
            scale[:, :1] = self.scale_pos0.to(x.dtype)
        scale = self.hook_scale(scale)
        y = x / scale * self.w
        return self.hook_normalized(y if self.b is None else y + self.b)

    def extra_repr(self) -> str:
        return f"{self.d}, scale={self.scale.item():.4g}, scale_pos0={self.scale_pos0.item():.4g}"
