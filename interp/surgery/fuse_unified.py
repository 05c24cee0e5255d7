"""Fuse a Pre-norm Unified Normalization model into the linear layers that read its norms (Yang et al. 2022).

At inference Unified Norm divides each channel by its running statistic, √(running_var + ε), then applies its
gain and bias: an affine map per channel with fixed coefficients. Folded into the next linear layer (ln1 →
attn.qkv, ln2 → mlp.up, ln_final → unembedding, which becomes untied and gains a bias) it costs nothing: the
result is a norm-free zoo model (placement "none") computing the same logits as the eval-mode original.
This is the fusion the paper's inference speed-up rests on.
"""
from __future__ import annotations

import dataclasses

import torch

from interp.surgery.fold import copy_into, fold_affine
from interp.zoo.model import ZooModel


def _affine(n) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a Unified Norm in eval mode: y = x·scale + shift."""
    s = (n.running_var + n.eps).sqrt()
    return (n.w / s).detach(), n.b.detach()


def fuse_unified(model: ZooModel) -> ZooModel:
    """A norm-free ZooModel equal to `model` in eval mode (a Pre-norm Unified Norm model with a final norm)."""
    cfg = model.cfg
    if not isinstance(model, ZooModel) or cfg.placement != "pre" or cfg.norm != "unified" or not cfg.final_norm:
        what = f"{cfg.placement}/{cfg.norm}" if isinstance(model, ZooModel) else type(model).__name__
        raise ValueError(f"fusing needs a Pre-norm Unified Norm zoo model with a final norm, got {what}")
    new = ZooModel(dataclasses.replace(cfg, placement="none", norm="none", final_norm=False, norm_kwargs={},
                                       unembed_bias=True, tie_embeddings=False, bias=True,
                                       strategy=f"{cfg.strategy}-fused"),
                   tokenizer=model.tokenizer).to(next(model.parameters()).dtype)
    s = {k: v.detach().clone() for k, v in model.state_dict().items()
         if not (k.startswith("ln_final.") or ".ln1." in k or ".ln2." in k)}
    for blk in model.blocks:
        p = f"blocks.{blk.layer}"
        for ln, lin in (("ln1", "attn.qkv"), ("ln2", "mlp.up")):
            w, b = _affine(getattr(blk, ln))
            s[f"{p}.{lin}.weight"], s[f"{p}.{lin}.bias"] = fold_affine(s[f"{p}.{lin}.weight"],
                                                                       s.get(f"{p}.{lin}.bias"), w, b)
        for lin in ("attn.out", "mlp.down"):  # a bias=False model: the folded layers need biases, so all get one
            s.setdefault(f"{p}.{lin}.bias", torch.zeros_like(s[f"{p}.{lin}.weight"][:, 0]))
    w, b = _affine(model.ln_final)
    s["unembed.weight"], s["unembed.bias"] = fold_affine(model.unembed.weight.detach().clone(),
                                                         s.get("unembed.bias"), w, b)  # keeps an existing b_U
    copy_into(new, s)
    return new.eval()
