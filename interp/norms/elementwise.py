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
    """Time-dependent LayerNorm (DiMR): each of γ, β is p(t) = s·p0 + (1 − s)·p1, s = σ((1 + w)·t + b) per channel.

    As in DiMR's `TimeDependentParameter`, every channel of γ and of β has its own gate, whose slope is stored
    as w = slope − 1 (a zero parameter plus one) and whose offset b starts at 0. p0 and p1 start equal (γ = 1,
    β = 0), so at init the norm is a plain LayerNorm, yet s depends on t from the first step: the gradients of
    p0 and p1 differ, p0 − p1 moves off zero, and then the gates learn (with slope 0, s = ½ for every t and
    training could never leave p0 = p1). `self.cond` ([batch] floats, set by the model from its `cond`
    argument; zeros if unset) is t. `gate_w` / `gate_b` are [2, d]: row 0 gates γ, row 1 gates β.
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__(d, eps)
        self.w0, self.w1 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.b0, self.b1 = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))
        self.gate_w = nn.Parameter(torch.zeros(2, d))  # (γ, β) gate slopes − 1, per channel
        self.gate_b = nn.Parameter(torch.zeros(2, d))  # (γ, β) gate offsets, per channel

    def gates(self, t: torch.Tensor) -> torch.Tensor:
        """s(t) [b, 2, d] for t [b]: row 0 the γ gate, row 1 the β gate."""
        return torch.sigmoid(t.view(-1, 1, 1) * (1 + self.gate_w) + self.gate_b)

    def params(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """γ(t), β(t) [b, d] for t [b]."""
        s = self.gates(t)
        return s[:, 0] * self.w0 + (1 - s[:, 0]) * self.w1, s[:, 1] * self.b0 + (1 - s[:, 1]) * self.b1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, t, d]
        x = self.hook_in(x)
        t = self.cond if self.cond is not None else torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        gamma, beta = self.params(t.to(x.dtype).expand(x.shape[0]))  # [b, d]
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())  # [b, t, 1]
        return self.hook_normalized(x / scale * gamma[:, None] + beta[:, None])

    def upgrade_state_dict(self, state_dict: dict, prefix: str) -> None:
        """Checkpoints of the earlier TD-LN (one scalar gate per γ / β, slope stored as is, [2]) load unchanged:
        their gates become per-channel rows with slope − 1 = w_old − 1 (same function), in `state_dict` in place."""
        w, b = state_dict.get(prefix + "gate_w"), state_dict.get(prefix + "gate_b")
        if w is not None and b is not None and w.shape == (2,) and b.shape == (2,):
            state_dict[prefix + "gate_w"] = (w - 1)[:, None].expand(2, self.d).clone()
            state_dict[prefix + "gate_b"] = b[:, None].expand(2, self.d).clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.upgrade_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Identity(Norm):
    """No normalization: y = x (keeps hook_in / hook_normalized so a model's hook names stay uniform)."""

    has_scale = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(self.hook_in(x))
