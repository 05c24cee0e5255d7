"""Hook points for a transformers norm module: hook_in, hook_scale, hook_normalized (the zoo norms' meanings).

kind: "rmsnorm"   y = w · x / s,        s = sqrt(mean(x²) + eps)          (Llama)
      "rmsnorm1p" y = (1 + w) · x / s,  s = sqrt(mean(x²) + eps)          (Gemma-3)
      "layernorm" y = w · (x − μ) / s + b,  s = sqrt(var(x) + eps)         (GPT-2, BERT)
      "none"      y = x (the norm was replaced by identity: LN-free GPT-2); no hook_scale
The scale [b, t, 1] is computed only when hook_scale is observed; a hook that returns a new scale makes the
norm divide by it (e.g. to freeze scales), so scale edits write back like every other hook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.models.hooks import fire, observed, on_input

KINDS = ("rmsnorm", "rmsnorm1p", "layernorm", "none")


class NormHooks(nn.Module):
    """The hook points of one wrapped norm; `normalize(x)` applies the norm to x without firing any hook."""

    def __init__(self, kind: str, norm: nn.Module | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown norm kind {kind!r}; choose one of: {', '.join(KINDS)}")
        self.kind, self.has_scale = kind, kind != "none"
        self._norm = [norm]  # a list keeps the HF module out of this module's tree (it lives under .hf)
        self.hook_in = HookPoint()            # [b, t, d] the norm's input
        if self.has_scale:
            self.hook_scale = HookPoint()     # [b, t, 1] the divisor
        self.hook_normalized = HookPoint()    # [b, t, d] the output, after gain (and bias)

    @property
    def norm(self) -> nn.Module | None:
        return self._norm[0]

    @property
    def eps(self) -> float:
        n = self.norm
        return float(getattr(n, "eps", getattr(n, "variance_epsilon", 0.0)))

    @property
    def centre(self) -> bool:
        """Whether the norm subtracts the mean (LayerNorm) before dividing by the scale."""
        return self.kind == "layernorm"

    @property
    def gain(self) -> torch.Tensor | None:
        """The effective per-channel gain [d] (w, or 1 + w for Gemma); None when the norm is the identity.
        For a fixed scale s the norm is affine: y = centre?(x) / s * gain + bias (what DLA needs)."""
        if self.kind == "none":
            return None
        w = self.norm.weight
        return 1.0 + w if self.kind == "rmsnorm1p" else w

    @property
    def bias(self) -> torch.Tensor | None:
        """The additive bias [d] (LayerNorm), or None."""
        return getattr(self.norm, "bias", None) if self.kind == "layernorm" else None

    def attach(self, norm: nn.Module | None = None) -> list:
        """Register the PyTorch hooks on the norm module (`norm` replaces the one given at construction)."""
        if norm is not None:
            self._norm = [norm]
        return [on_input(self.norm, lambda x: fire(self.hook_in, x)), self.norm.register_forward_hook(self._post)]

    def _post(self, mod, args, out):
        x = args[0] if args else None
        if self.has_scale and x is not None and observed(self.hook_scale):
            s = self.scale(x)
            s2 = self.hook_scale(s)
            if s2 is not s:
                out = self.from_scale(x, s2).to(out.dtype)
        return fire(self.hook_normalized, out)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The statistic the norm divides x [..., d] by, computed in float32: [..., 1]."""
        x = x.float()
        if self.kind == "layernorm":
            return (x.var(-1, keepdim=True, unbiased=False) + self.eps).sqrt()
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def from_scale(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The norm's output for input x divided by the scale s (what the module computes when s = scale(x))."""
        n, xf = self.norm, x.float()
        if self.kind == "rmsnorm":
            return n.weight * (xf / s).to(x.dtype)
        if self.kind == "rmsnorm1p":
            return ((xf / s) * (1.0 + n.weight.float())).to(x.dtype)
        if self.kind == "layernorm":
            y = (xf - xf.mean(-1, keepdim=True)) / s
            y = y * n.weight.float() if n.weight is not None else y
            return (y + n.bias.float() if n.bias is not None else y).to(x.dtype)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The norm applied to x [..., d] with its statistics recomputed on x; no hook fires."""
        if self.kind == "none":
            return x
        if self.kind == "layernorm":
            n = self.norm
            return F.layer_norm(x, n.normalized_shape, n.weight, n.bias, n.eps)
        return self.from_scale(x, self.scale(x))
