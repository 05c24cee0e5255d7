"""adaLN-Zero's norm (DiT, Peebles & Xie 2023): LayerNorm without affine, modulated by the conditioning vector."""
from __future__ import annotations

import torch
from torch import nn

from interp.norms.base import Norm


class AdaLayerNorm(Norm):
    """y = x̂·(1 + scale(c)) + shift(c), x̂ = (x − mean) / sqrt(var + eps), (shift, scale) = W·c + b.

    `self.cond` is c [batch, d_cond] (the model sets it to SiLU of its t-embedding; unset: no modulation). W
    [2d, d_cond] and b [2d] start at zero (adaLN-Zero), so at init the norm is a LayerNorm without affine.
    """

    def __init__(self, d: int, eps: float = 1e-5, d_cond: int | None = None):
        super().__init__(d, eps)
        self.mod_w = nn.Parameter(torch.zeros(2 * d, d_cond or d))  # rows: shift, then scale
        self.mod_b = nn.Parameter(torch.zeros(2 * d))

    def params(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """γ = 1 + scale(c) and β = shift(c), [b, d] each, for c [b, d_cond]."""
        shift, scale = (c @ self.mod_w.T + self.mod_b).chunk(2, -1)
        return 1 + scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # [b, t, 1]
        y = x / scale
        if self.cond is not None:
            gamma, beta = self.params(self.cond.to(x.dtype))
            y = y * gamma[:, None] + beta[:, None]
        return self.hook_normalized(y)
