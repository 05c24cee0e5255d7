"""Pre-LN -> Pre-RMSNorm -> Pre-CRMSNorm, the same function (Jiang et al. 2023, "Pre-RMSNorm and Pre-CRMSNorm
Transformers: Equivalent and Efficient Pre-LN Transformers").

to_rmsnorm: fold every LayerNorm's gain and bias into the linear layer that reads it (ln1 -> qkv, ln2 -> up,
ln_final -> unembedding, which becomes untied and gains a bias b_U = W_U·b), re-centre the embeddings and
every matrix writing into the residual stream (attn.out, mlp.down) so the stream is zero-mean, and swap each
LayerNorm for RMSNorm (gain 1): on a zero-mean vector LN's variance is RMSNorm's mean square. Every write into
the stream must be mean-free for that, so a masked-diffusion model's [MASK] embedding (`mask_embed`) and the
output layer of its timestep embedder (t_embed="add": its output is added to every position) are re-centred
too; a rotary model has no position embedding to centre. QK-norm and RoPE act after the qkv projection and stay.
to_crmsnorm: the zero-mean stream has one redundant coordinate x_d = −Σ_{i<d} x_i. Keep d − 1: writers drop
their last row, readers fold it in (W'_i = W_i − W_d), and CRMSNorm over the stored d − 1 recovers Σ x² over
all d. The attention keeps its width d (ZooConfig.d_attn), the residual stream becomes d_model − 1. A timestep
embedder's hidden width is d_model too and cannot shrink with the stream, so to_crmsnorm refuses t_embed="add".
Both return new zoo models (float dtype of the input); the input is not modified.
"""
from __future__ import annotations

import dataclasses

import torch

from interp.norms import LayerNorm
from interp.surgery.fold import centre_writes, copy_into, fold_affine
from interp.zoo.model import ZooModel

WRITERS = ("attn.out.weight", "mlp.down.weight", "attn.out.bias", "mlp.down.bias", ".ln1.w", ".ln2.w")


def _check_pre_ln(model) -> None:
    cfg = getattr(model, "cfg", None)
    if not isinstance(model, ZooModel) or cfg.placement != "pre" or cfg.norm != "layernorm" or not cfg.final_norm:
        what = f"{cfg.placement}/{cfg.norm}" if isinstance(model, ZooModel) else type(model).__name__
        raise ValueError(f"conversion needs a Pre-LN zoo model with LayerNorm and a final norm, got {what}")
    for m in model.modules():
        if m is not model and isinstance(m, ZooModel):
            raise ValueError("nested models are not supported")
    norms = [(f"blocks.{b.layer}.{n}", getattr(b, n)) for b in model.blocks for n in ("ln1", "ln2")]
    for name, n in norms + [("ln_final", model.ln_final)]:  # LN removal swaps them for FakeLN / Identity
        if type(n) is not LayerNorm:
            raise ValueError(f"conversion needs every ln1 / ln2 / ln_final to be a LayerNorm, but {name} is "
                             f"{type(n).__name__} (a model in the middle of LN removal?): convert before removing "
                             "LayerNorm; a finished removal folded by fold_fakeln has no norm left to convert")


def _rms_state(model) -> dict[str, torch.Tensor]:
    """The state of the equivalent Pre-RMSNorm model (RMSNorm gains 1, everything folded)."""
    s = {k: v.detach().clone() for k, v in model.state_dict().items()}
    s["unembed.weight"] = model.unembed.weight.detach().clone()
    for k in ("embed.weight", "pos_embed.weight", "mask_embed"):  # rows (the last: one vector) into the stream
        if k in s:
            s[k] = s[k] - s[k].mean(-1, keepdim=True)
    if model.cfg.t_embed == "add":  # x + t_embed(t): its last Linear writes into the stream
        s["t_embed.mlp.2.weight"], s["t_embed.mlp.2.bias"] = centre_writes(s["t_embed.mlp.2.weight"],
                                                                           s["t_embed.mlp.2.bias"])
    for blk in model.blocks:
        p = f"blocks.{blk.layer}"
        for ln, lin in (("ln1", "attn.qkv"), ("ln2", "mlp.up")):
            n: LayerNorm = getattr(blk, ln)
            s[f"{p}.{lin}.weight"], s[f"{p}.{lin}.bias"] = fold_affine(
                s[f"{p}.{lin}.weight"], s.get(f"{p}.{lin}.bias"), n.w.detach(), None if n.b is None else n.b.detach())
            s[f"{p}.{ln}.w"] = torch.ones_like(n.w)
            s.pop(f"{p}.{ln}.b", None)
        for lin in ("attn.out", "mlp.down"):
            s[f"{p}.{lin}.weight"], bias = centre_writes(s[f"{p}.{lin}.weight"], s.get(f"{p}.{lin}.bias"))
            s[f"{p}.{lin}.bias"] = bias if bias is not None else torch.zeros_like(s[f"{p}.{lin}.weight"][:, 0])
    n = model.ln_final
    s["unembed.weight"], s["unembed.bias"] = fold_affine(s["unembed.weight"], s.get("unembed.bias"), n.w.detach(),
                                                         None if n.b is None else n.b.detach())
    s["ln_final.w"] = torch.ones_like(n.w)
    s.pop("ln_final.b", None)
    return s


def _new_model(model, state: dict, **cfg_changes) -> ZooModel:
    cfg = dataclasses.replace(model.cfg, tie_embeddings=False, unembed_bias=True, bias=True, **cfg_changes)
    new = ZooModel(cfg, tokenizer=getattr(model, "tokenizer", None))
    new.to(next(model.parameters()).dtype)
    copy_into(new, state)
    new.weight_source = f"{getattr(model, 'weight_source', 'random init')} -> {cfg.strategy}"
    return new.eval()


def to_rmsnorm(model: ZooModel) -> ZooModel:
    """The Pre-RMSNorm model computing the same logits as Pre-LN `model` (see the module docstring)."""
    _check_pre_ln(model)
    with torch.no_grad():
        return _new_model(model, _rms_state(model), norm="rmsnorm", strategy="pre-rmsnorm (from pre-ln)")


def to_crmsnorm(model: ZooModel) -> ZooModel:
    """The Pre-CRMSNorm model (residual stream d_model − 1) computing the same logits as Pre-LN `model`."""
    _check_pre_ln(model)
    if model.cfg.t_embed != "none":
        raise ValueError(f"to_crmsnorm cannot convert {model.cfg.strategy} exactly: its timestep embedder's hidden "
                         "width is d_model, which CRMSNorm shrinks by one; use to_rmsnorm for this model")
    d = model.cfg.d_model
    with torch.no_grad():
        s = _rms_state(model)
        read = lambda W: W[:, :d - 1] - W[:, d - 1:]  # readers of the stream (or of its normalized copy)
        for k in list(s):
            v = s[k]
            if k in ("embed.weight", "pos_embed.weight"):
                s[k] = v[:, :d - 1]
            elif k == "mask_embed":
                s[k] = v[:d - 1]
            elif k.endswith(("attn.qkv.weight", "mlp.up.weight")) or k == "unembed.weight":
                s[k] = read(v)
            elif k.endswith(WRITERS) or k == "ln_final.w":  # writers of the stream, and the norm gains
                s[k] = v[:d - 1]
        return _new_model(model, s, norm="crmsnorm", d_model=d - 1, d_attn=model.cfg.d_attn or d,
                          strategy="pre-crmsnorm (from pre-ln)")
