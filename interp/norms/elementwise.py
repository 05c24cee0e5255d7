"""Norms that divide by no statistic: DyT (Zhu et al. 2025), TD-LN (DiMR, time-conditioned LN) and Identity."""
from __future__ import annotations

import torch
from torch import nn

from interp.norms.base import Norm


class DyT(Norm):
    """Dynamic Tanh: y = γ·tanh(αx) + β with α a learnable scalar (init 0.5). Divides by nothing: no hook_scale."""

    has_scale = False

    def __init__(self, d: int, alpha_init: float = 0.5, eps: float = 0.0):
        super().__init__(d, eps)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        return self.hook_normalized(torch.tanh(self.alpha * x) * self.w + self.b)


class TDLayerNorm(Norm):
    """Time-dependent LayerNorm (DiMR): each of γ, β is p(t) = s·p0 + (1 − s)·p1 with s = σ(w·t + b).

    `self.cond` ([batch] floats, set by the model from its `cond` argument; zeros if unset) is t.
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__(d, eps)
        self.w0, self.w1 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.b0, self.b1 = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))
        self.gate_w = nn.Parameter(torch.zeros(2))  # (γ gate, β gate) slopes
        self.gate_b = nn.Parameter(torch.zeros(2))  # (γ gate, β gate) offsets

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        t = self.cond if self.cond is not None else torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        s = torch.sigmoid(t.to(x.dtype).view(-1, 1, 1, 1) * self.gate_w + self.gate_b)  # [b, 1, 1, 2]
        gamma = s[..., 0] * self.w0 + (1 - s[..., 0]) * self.w1  # [b, 1, d]
        beta = s[..., 1] * self.b0 + (1 - s[..., 1]) * self.b1    # [b, 1, d]
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # [b, t, 1]
        return self.hook_normalized(x / scale * gamma + beta)


class Identity(Norm):
    """No normalization: y = x (keeps hook_in / hook_normalized so a model's hook names stay uniform)."""

    has_scale = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(self.hook_in(x))
