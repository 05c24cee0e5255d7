"""Replay the residual path of a zoo model at one position per sequence, with every sublayer output held fixed.

The stream at the end of a zoo model is a function of what each *site* writes: the embedding (token + position),
and the raw output of each attention and MLP sublayer (before any Peri-LN output norm). Along the residual path
those writes pass only through norms: Peri-LN output norms, Post-LN block norms and the final norm. `replay`
recomputes that path, so that

  - with no changes it reproduces the model's own final (normed) stream (tests check this against `forward`);
  - with a component's write subtracted at its site and the norm statistics *recomputed*, it gives the true
    direct effect of that component (path ablation: no other sublayer sees the change);
  - with the norm statistics *frozen* and `bias_rows` given, every norm is an affine map, and a stack of
    per-component writes [R, b, d] propagates linearly; each norm's bias lands in its own row. This is DLA.

Supported norms: LayerNorm, RMSNorm, CRMSNorm, FakeLN, Identity (the token-wise norms with a scale to freeze).
"""
from __future__ import annotations

import torch

from interp.norms import CRMSNorm, FakeLN, Identity, LayerNorm, Norm, RMSNorm

SUPPORTED = (LayerNorm, RMSNorm, CRMSNorm, FakeLN, Identity)


def check_supported(norm: Norm, name: str) -> None:
    if not isinstance(norm, SUPPORTED):
        raise ValueError(f"norm {name} is a {type(norm).__name__}: attribution supports only token-wise norms with a "
                         "scale to freeze (LayerNorm, RMSNorm, CRMSNorm, FakeLN); DyT, TD-LN and batch-statistic "
                         "norms have no per-token scale")


def flat_pos0(tokens: torch.Tensor) -> torch.Tensor:
    """norm_scale's pos0 for a stream flattened from tokens [b, t] to [b·t, d]: True on each sequence's first token."""
    return torch.arange(tokens.numel()) % tokens.shape[-1] == 0


def norm_scale(norm: Norm, y: torch.Tensor, pos0: torch.Tensor) -> torch.Tensor:
    """The divisor the norm computes on y [..., b, d] (pos0 [b]: whether the token sits at position 0) -> [..., b, 1]."""
    if isinstance(norm, LayerNorm):
        yc = y - y.mean(-1, keepdim=True)
        return (yc.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    if isinstance(norm, RMSNorm):
        return (y.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    if isinstance(norm, CRMSNorm):
        return ((y.pow(2).sum(-1, keepdim=True) + y.sum(-1, keepdim=True).pow(2)) / (norm.d + 1) + norm.eps).sqrt()
    if isinstance(norm, FakeLN):
        s = norm.scale.to(y.dtype).expand(pos0.shape[0])
        if not torch.isnan(norm.scale_pos0):
            s = torch.where(pos0, norm.scale_pos0.to(y.dtype), s)
        return s[:, None].expand(*y.shape[:-1], 1)
    return torch.ones_like(y[..., :1])  # Identity


def norm_linear(norm: Norm, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The norm's output without its bias, dividing by `scale`: linear in y once the scale is fixed."""
    if isinstance(norm, Identity):
        return y
    if isinstance(norm, LayerNorm) or (isinstance(norm, FakeLN) and norm.centre):
        y = y - y.mean(-1, keepdim=True)
    return y / scale * norm.w.to(y.dtype)


def norm_bias(norm: Norm) -> torch.Tensor | None:
    return getattr(norm, "b", None)


def path_norms(model) -> list[tuple[str, Norm]]:
    """The norms on the residual path, in order: Peri-LN / reordered output norms, Post-LN block norms, the final
    norm."""
    out = []
    for blk in model.blocks:
        p = f"blocks.{blk.layer}"
        if blk.placement in ("peri", "reordered"):
            out += [(f"{p}.ln1_post", blk.ln1_post), (f"{p}.ln2_post", blk.ln2_post)]
        elif blk.placement == "post":
            out += [(f"{p}.ln1", blk.ln1), (f"{p}.ln2", blk.ln2)]
    if model.cfg.final_norm:
        out.append(("ln_final", model.ln_final))
    for name, n in out:
        check_supported(n, name)
    return out


def replay(model, sites: list[torch.Tensor], pos0: torch.Tensor, scales: dict[str, torch.Tensor] | None = None,
           bias_rows: dict[str, int] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the residual path from site writes to the stream the unembedding reads.

    sites: 2L+1 tensors [..., b, d]: the embedding (token + position), then attention and MLP raw output of each
    layer. scales: frozen divisors by norm name (None: recompute, and return them). bias_rows: linear mode,
    the row of the leading [R] dimension that receives each norm's bias (needs `scales`).
    Returns (final stream [..., b, d], scales used by name).
    """
    used: dict[str, torch.Tensor] = {}

    def norm(name: str, mod: Norm, y: torch.Tensor) -> torch.Tensor:
        s = scales[name] if scales is not None else norm_scale(mod, y, pos0)
        used[name] = s
        out = norm_linear(mod, y, s)
        b = norm_bias(mod)
        if b is None:
            return out
        if bias_rows is None:
            return out + b.to(y.dtype)
        out = out.clone()
        out[bias_rows[name]] += b.to(y.dtype)
        return out

    x = sites[0]
    for blk in model.blocks:
        p, a, m = f"blocks.{blk.layer}", sites[1 + 2 * blk.layer], sites[2 + 2 * blk.layer]
        if blk.placement in ("peri", "reordered"):
            x = x + norm(f"{p}.ln1_post", blk.ln1_post, a)
            x = x + norm(f"{p}.ln2_post", blk.ln2_post, m)
        elif blk.placement == "post":  # DeepNorm up-weights the residual by α (1 for plain Post-LN)
            x = norm(f"{p}.ln1", blk.ln1, blk.alpha * x + a)
            x = norm(f"{p}.ln2", blk.ln2, blk.alpha * x + m)
        else:  # pre, lns, none: the norms act on sublayer inputs only, off the residual path
            x = x + a + m
    if model.cfg.final_norm:
        x = norm("ln_final", model.ln_final, x)
    return x, used
