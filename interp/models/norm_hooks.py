"""Hook points for a transformers norm module: hook_in, hook_scale, hook_normalized (the zoo norms' meanings).

kind: "rmsnorm"   y = w · x / s,        s = sqrt(mean(x²) + eps)          (Llama, Qwen, OLMo-2, Phi-3)
      "rmsnorm1p" y = (1 + w) · x / s,  s = sqrt(mean(x²) + eps)          (Gemma)
      "layernorm" y = w · (x − μ) / s + b,  s = sqrt(var(x) + eps)         (GPT-2, BERT; w or b may be absent:
                                                                           OLMo has neither, Cohere no b)
      "none"      y = x (the norm was replaced by identity: LN-free GPT-2); no hook_scale
`hook_normalized` always carries the module's output y, after the gain (and bias): what the next layer reads.
The gain-free value is centre(hook_in) / hook_scale. (TransformerLens differs by class: its LayerNorm hooks
after the gain, its RMSNorm before; TransformerLens issues #747, #1002.)

Norms inside the attention (QK-norm) act on each head: their hooks carry [b, t, h, d_head] (transformers
modules that take heads first, [b, h, t, d_head], are transposed for the hooks and back), or [b, t, h·d_head]
for norms over all heads at once (OLMo-2). The scale has the input's shape with a last dimension of 1.
The scale is computed only when hook_scale is observed; a hook that returns a new scale makes the norm divide
by it (e.g. to freeze scales), so scale edits write back like every other hook.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.models.hooks import fire, observed

KINDS = ("rmsnorm", "rmsnorm1p", "layernorm", "none")


class NormHooks(nn.Module):
    """The hook points of one wrapped norm; `normalize(x)` applies the norm to x without firing any hook.

    eps: the norm's epsilon when the module does not carry it (OLMo's LayerNorm); heads_first: the module's
    input is [b, h, t, d_head] and the hooks see it as [b, t, h, d_head]."""

    def __init__(self, kind: str, norm: nn.Module | None = None, eps: float | None = None, heads_first: bool = False):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown norm kind {kind!r}; choose one of: {', '.join(KINDS)}")
        self.kind, self.has_scale, self.heads_first, self._eps = kind, kind != "none", heads_first, eps
        self._norm = [norm]  # a list keeps the HF module out of this module's tree (it lives under .hf)
        self.hook_in = HookPoint()            # [b, t, d] the norm's input ([b, t, h, d_head] for QK-norms)
        if self.has_scale:
            self.hook_scale = HookPoint()     # [b, t, 1] the divisor
        self.hook_normalized = HookPoint()    # [b, t, d] the output, after gain (and bias)

    @property
    def norm(self) -> nn.Module | None:
        return self._norm[0]

    def _param(self, name: str) -> torch.Tensor | None:
        n = self.norm
        per_head = getattr(n, "norms", None)
        if isinstance(per_head, nn.ModuleList):  # one norm module per head (StableLM's QK LayerNorm): stack
            ps = [getattr(m, name, None) for m in per_head]
            return None if ps[0] is None else torch.stack(list(ps))
        return getattr(n, name, None)

    @property
    def eps(self) -> float:
        if self._eps is not None:
            return self._eps
        n = self.norm
        n = n.norms[0] if isinstance(getattr(n, "norms", None), nn.ModuleList) else n
        return float(getattr(n, "eps", getattr(n, "variance_epsilon", 0.0)))

    @property
    def centre(self) -> bool:
        """Whether the norm subtracts the mean (LayerNorm) before dividing by the scale."""
        return self.kind == "layernorm"

    @property
    def weight(self) -> torch.Tensor | None:
        """The module's own weight ([d], or [h, d_head] for per-head norms), None when it has none."""
        return None if self.kind == "none" else self._param("weight")

    @property
    def gain(self) -> torch.Tensor | None:
        """The effective per-channel gain (w, or 1 + w for Gemma); None when the norm has no gain.
        For a fixed scale s the norm is affine: y = centre?(x) / s * gain + bias (what DLA needs)."""
        w = self.weight
        if w is None:
            return None
        return 1.0 + w if self.kind == "rmsnorm1p" else w

    @property
    def bias(self) -> torch.Tensor | None:
        """The additive bias (LayerNorm), or None."""
        return self._param("bias") if self.kind == "layernorm" else None

    # --- layout: heads-first modules are seen as [b, t, h, d_head] -------------------------------------------
    def _view(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2) if self.heads_first else x

    def attach(self, norm: nn.Module | None = None) -> list:
        """Register the PyTorch hooks on the norm module (`norm` replaces the one given at construction)."""
        if norm is not None:
            self._norm = [norm]
        return [self.norm.register_forward_pre_hook(self._pre, with_kwargs=True),
                self.norm.register_forward_hook(self._post, with_kwargs=True)]

    def _pre(self, mod, args, kwargs):
        if not observed(self.hook_in):
            return None
        x = self._view(args[0] if args else kwargs["hidden_states"])
        y = self.hook_in(x)
        if y is x:
            return None
        return ((self._view(y), *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": self._view(y)})

    def _post(self, mod, args, kwargs, out):
        rescale = self.has_scale and observed(self.hook_scale)
        if not (rescale or observed(self.hook_normalized)):
            return None
        y0 = y = self._view(out)
        if rescale:
            x = self._view(args[0] if args else kwargs["hidden_states"])
            s = self.scale(x)
            s2 = self.hook_scale(s)
            if s2 is not s:
                y = self.from_scale(x, s2).to(out.dtype)
        y = fire(self.hook_normalized, y)
        return None if y is y0 else self._view(y)

    @staticmethod
    def _work(x: torch.Tensor) -> torch.Tensor:
        """x in the dtype the statistics are computed in: float32, or float64 for a float64 x (no precision lost)."""
        return x if x.dtype == torch.float64 else x.float()

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The statistic the norm divides x [..., d] by, computed in float32 (float64 for float64 x): [..., 1]."""
        x = self._work(x)
        if self.kind == "layernorm":
            return (x.var(-1, keepdim=True, unbiased=False) + self.eps).sqrt()
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def from_scale(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The norm's output for input x divided by the scale s (what the module computes when s = scale(x))."""
        xf, w = self._work(x), self.weight
        if self.kind == "rmsnorm":
            y = (xf / s).to(x.dtype)
            return y if w is None else w * y
        if self.kind == "rmsnorm1p":
            return ((xf / s) * (1.0 + w.to(xf.dtype))).to(x.dtype)
        if self.kind == "layernorm":
            y = (xf - xf.mean(-1, keepdim=True)) / s
            y = y * w.to(xf.dtype) if w is not None else y
            b = self.bias
            return (y + b.to(xf.dtype) if b is not None else y).to(x.dtype)
        return x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The norm applied to x [..., d] with its statistics recomputed on x; no hook fires."""
        if self.kind == "none":
            return x
        n = self.norm
        if isinstance(n, nn.LayerNorm):
            return F.layer_norm(x, n.normalized_shape, n.weight, n.bias, n.eps)
        return self.from_scale(x, self.scale(x))
