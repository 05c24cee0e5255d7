"""Hook points shared by every norm, with TransformerLens's meaning.

  hook_in:         the norm's input x                                  (for Post-LN: the un-normalized sum)
  hook_scale:      the statistic x is divided by, e.g. sqrt(var + eps) [batch, pos, 1] for token-wise norms,
                   [1, 1, d] for batch-statistic norms (absent for DyT and Identity, which divide by nothing);
                   PowerNorm divides its group-scaled input by it, not hook_in itself
  hook_normalized: the output, after the gain and bias (TransformerLens hooks it after the affine map too)
"""
from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint


def observed(*hooks: HookPoint) -> bool:
    """Whether any forward or backward hook is attached to one of `hooks` (else fast paths may skip them), a
    hook run as the point's own forward (`interp.collectors.driver.direct`) included."""
    return any(h._forward_hooks or h._backward_hooks or h._forward_pre_hooks or "_interp_direct" in h.__dict__
               for h in hooks)


class Norm(nn.Module):
    """Base class: a norm over the last dimension of [batch, pos, d] inputs, with hook points.

    `token_mask` ([batch, pos] bool, True on real tokens) and `cond` ([batch] float) are set by the model
    before a forward for the norms that need them (batch-statistic norms skip padding; TD-LN is conditioned).
    """

    has_scale = True

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.d, self.eps = d, eps
        self.hook_in = HookPoint()
        if self.has_scale:
            self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()
        self.token_mask: torch.Tensor | None = None
        self.cond: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}"
