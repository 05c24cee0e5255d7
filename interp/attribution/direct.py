"""Direct logit attribution (DLA) next to the true direct effect, so its error is measured, not assumed.

For a metric m = logit(target) [− logit(contrast)] read at one position per sequence:

  dla            the component's write pushed through every norm on the residual path with its scale FROZEN
                 at the value of the actual forward pass (an affine map), then dotted with the unembedding
                 direction. Norm biases and b_U are rows of their own (kind "norm_bias" / "unembed_bias"), so
                 all rows sum to m exactly, and the components sum to m minus the bias rows.
  direct_effect  m(full) − m(component's write removed at its site, every norm on the residual path
                 RECOMPUTED): path ablation; no sublayer sees the change. NaN for bias rows.
  error          dla − direct_effect;   rel_error = |error| / |m|.

Placements: pre / lns / none: components are added straight to the stream; only the final norm is on the path.
peri: components are what the sublayer writes BEFORE its output norm, so that norm (frozen for DLA, recomputed
for the direct effect) is on the path too. post (and mix's post blocks): the stream itself is normalized after
every sublayer, so the path from a write to the logits crosses every later block norm; DLA freezes all of them.
This is meaningful as "the write's effect through the residual path only", but with L stacked frozen scales
it is a much coarser approximation than in Pre-LN, which the error columns show. No norm: DLA is exact.

Columns of `dla(...)`: model, batch, pos, target, contrast (-1: none), component, kind, layer, index (head or
neuron, -1 otherwise), dla, direct_effect, error, rel_error, metric (m for that sequence).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch

from interp.attribution.components import cache_names, split_components
from interp.attribution.replay import path_norms, replay
from interp.attribution.sublayers import dla_sublayers
from interp.attribution.targets import batch_tokens, mask_kwargs, per_batch_tokens, positions

if TYPE_CHECKING:
    from interp.contract import HookedModel


def dla(model: HookedModel, tokens: torch.Tensor, target, contrast=None, pos: int | Sequence[int] = -1,
        neuron_layers: Sequence[int] = (), components: Sequence[str] | None = None,
        attention_mask: torch.Tensor | None = None) -> pd.DataFrame:
    """DLA, direct effect and DLA error of every component of a zoo model (see the module docstring).

    tokens [b, t]; target / contrast: a token id or one-token string, or one per sequence; pos: the position
    read (int or one per sequence); neuron_layers: layers whose MLP is split into neurons; components: keep only
    these names (an unknown name raises); attention_mask [b, t]: True on real tokens, for a padded batch (with
    right padding, pass each sequence's last real position as pos).
    """
    from interp.zoo.model import ZooModel
    if not isinstance(model, ZooModel):  # real models: sublayer granularity through the hook contract
        if neuron_layers or components is not None:
            raise ValueError(f"{model.card.name} is not a zoo model: only sublayer components (embed, L0.attn, "
                             "L0.mlp, ...) are available; drop neuron_layers / components")
        return dla_sublayers(model, tokens, target, contrast, pos, attention_mask)
    tokens = batch_tokens(tokens)
    mask = mask_kwargs(tokens, attention_mask)
    b, t = tokens.shape
    n_layers = len(model.blocks)
    for l in neuron_layers:
        if not 0 <= l < n_layers:
            raise ValueError(f"neuron layer {l} does not exist; the model has layers 0..{n_layers - 1}")
    tgt = per_batch_tokens(model, target, b, "target")
    con = None if contrast is None else per_batch_tokens(model, contrast, b, "contrast")
    p = positions(pos, b, t)
    norms = path_norms(model)  # raises for unsupported norms before any compute

    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=cache_names(n_layers, model.cfg.t_embed == "add"),
                                             **mask)
        comps = split_components(model, cache, p, tuple(neuron_layers))
        bias_names = [n for n, mod in norms if getattr(mod, "b", None) is not None]
        names = [c.name for c in comps] + [f"{n}.bias" for n in bias_names] + (["b_U"] if model.b_U is not None else [])
        if components is not None:
            unknown = [c for c in components if c not in names]
            if unknown:
                raise ValueError(f"unknown component {unknown[0]!r}; components are named like embed, pos_embed, "
                                 f"L0.H1, L0.attn_bias, L0.mlp, L0.N5 (with neuron_layers), L0.mlp_bias, ln_final.bias, b_U")
        dtype, d = comps[0].vec.dtype, comps[0].vec.shape[-1]
        W_U = model.W_U.to(dtype)
        u = W_U[:, tgt].T - (W_U[:, con].T if con is not None else 0)  # [b, d]
        b_U = model.b_U
        bias_const = torch.zeros(b, dtype=dtype) if b_U is None else (
            b_U.to(dtype)[tgt] - (b_U.to(dtype)[con] if con is not None else 0))
        metric = logits[torch.arange(b), p].to(dtype)
        metric = metric.gather(1, tgt[:, None])[:, 0] - (metric.gather(1, con[:, None])[:, 0] if con is not None else 0)
        pos0 = p == 0
        n_sites = 1 + 2 * n_layers
        site_sum = [sum(c.vec for c in comps if c.site == s) for s in range(n_sites)]

        # full path, statistics recomputed: reproduces the forward; its scales are what DLA freezes
        final, scales = replay(model, site_sum, pos0)
        full = (final * u).sum(-1) + bias_const

        # DLA: one row per component, then one per norm bias
        R = len(comps) + len(bias_names)
        rows = {n: len(comps) + i for i, n in enumerate(bias_names)}
        stack = [torch.zeros(R, b, d, dtype=dtype) for _ in range(n_sites)]
        for i, c in enumerate(comps):
            stack[c.site][i] = c.vec
        lin, _ = replay(model, stack, pos0, scales=scales, bias_rows=rows)
        dla_vals = (lin * u).sum(-1)  # [R, b]

        # direct effect: remove each component at its site, recompute every norm on the path
        ablated = [site_sum[s].expand(len(comps), b, d).clone() for s in range(n_sites)]
        for i, c in enumerate(comps):
            ablated[c.site][i] -= c.vec
        abl, _ = replay(model, ablated, pos0)
        de = full - ((abl * u).sum(-1) + bias_const)  # [C, b]

    label = model.card.name
    recs = []
    for i in range(R):
        is_comp = i < len(comps)
        c = comps[i] if is_comp else None
        for j in range(b):
            recs.append(dict(model=label, batch=j, pos=int(p[j]), target=int(tgt[j]),
                             contrast=-1 if con is None else int(con[j]),
                             component=c.name if is_comp else f"{bias_names[i - len(comps)]}.bias",
                             kind=c.kind if is_comp else "norm_bias", layer=c.layer if is_comp else -1,
                             index=c.index if is_comp else -1, dla=float(dla_vals[i, j]),
                             direct_effect=float(de[i, j]) if is_comp else float("nan"), metric=float(metric[j])))
    if b_U is not None:
        recs += [dict(model=label, batch=j, pos=int(p[j]), target=int(tgt[j]),
                      contrast=-1 if con is None else int(con[j]), component="b_U", kind="unembed_bias", layer=-1,
                      index=-1, dla=float(bias_const[j]), direct_effect=float("nan"), metric=float(metric[j]))
                 for j in range(b)]
    df = pd.DataFrame.from_records(recs)
    df["error"] = df["dla"] - df["direct_effect"]
    df["rel_error"] = df["error"].abs() / df["metric"].abs()
    if components is not None:  # a subset does not add up to the metric: dla_summary says so (NaN), not a gap
        df = df[df["component"].isin(components)].reset_index(drop=True)
        df.attrs["subset"] = True
    return df


def dla_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: how well DLA adds up and how far it is from the direct effect.

    Columns: model, n_components, max_sum_gap (max over sequences of |Σ all DLA rows − metric|), bias_share
    (mean Σ bias rows / |metric|), median_rel_error and max_rel_error (over components × sequences, bias rows
    excluded), total_rel_error (mean over sequences of |Σ DLA − Σ direct effect| over components / |metric|).
    max_sum_gap and bias_share are NaN for rows kept by `dla(..., components=...)`, which need not add up.
    """
    out = []
    for model, g in df.groupby("model", sort=False):
        comp = g[g["direct_effect"].notna()]
        per_seq = g.groupby("batch")
        gap = (per_seq["dla"].sum() - per_seq["metric"].first()).abs().max()
        bias = g[g["direct_effect"].isna()].groupby("batch")["dla"].sum().reindex(per_seq.size().index, fill_value=0)
        cs = comp.groupby("batch")
        tot = ((cs["dla"].sum() - cs["direct_effect"].sum()).abs() / cs["metric"].first().abs()).mean()
        subset = bool(df.attrs.get("subset"))
        out.append(dict(model=model, n_components=comp["component"].nunique(),
                        max_sum_gap=float("nan") if subset else float(gap),
                        bias_share=float("nan") if subset else float((bias / per_seq["metric"].first().abs()).mean()),
                        median_rel_error=float(comp["rel_error"].median()), max_rel_error=float(comp["rel_error"].max()),
                        total_rel_error=float(tot)))
    return pd.DataFrame(out)
