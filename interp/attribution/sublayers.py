"""DLA at sublayer granularity for any model on the hook contract (real models: SmolLM2, Gemma-3, GPT-2 ...).

Components are read from `model.sites`: the stream entering block 0 ("embed") and what each sublayer ADDS to
the stream (`deltas`: after Gemma's output norms, i.e. Peri-LN components are what is added). In Pre- and
Peri-LN models these sum exactly to the final norm's input. DLA pushes each through the final norm with its
scale frozen (`frozen(x, s)`, affine in x); the norm's bias and b_U are rows of their own. The direct effect
removes the component from the final norm's input and recomputes the norm (`model.apply_final_norm`).
Post-LN encoders (BERT) have no such decomposition and no LM head: refused. Same columns as `interp.attribution.dla`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch

from interp.attribution.replay import norm_scale
from interp.attribution.targets import batch_tokens, mask_kwargs, per_batch_tokens, positions
from interp.models.norm_hooks import NormHooks

if TYPE_CHECKING:
    from interp.contract import HookedModel


def frozen_final_norm(model: HookedModel) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The final norm as a function of (x, frozen scale s): the model's own `from_scale`, or the zoo's norm."""
    ln = getattr(model, "ln_final", None)
    if ln is not None and hasattr(ln, "from_scale"):
        return lambda x, s: ln.from_scale(x, s).to(x.dtype)
    from interp.attribution.replay import check_supported, norm_linear
    check_supported(ln, "ln_final")
    return lambda x, s: norm_linear(ln, x, s) + (ln.b.to(x.dtype) if getattr(ln, "b", None) is not None else 0)


def dla_sublayers(model: HookedModel, tokens: torch.Tensor, target, contrast=None, pos: int | Sequence[int] = -1,
                  attention_mask: torch.Tensor | None = None) -> pd.DataFrame:
    """Sublayer-level DLA, direct effect and error of any hooked causal LM with a Pre/Peri placement (arguments as
    `interp.attribution.dla`)."""
    sites, card = model.sites, model.card
    if card.objective not in ("causal_lm", "mdlm"):  # an MDLM (zoo) predicts tokens through W_U like a causal LM
        raise ValueError(f"{card.name} is an {card.objective} model with no LM head: there is no logit to attribute")
    if any(ls.placement in ("post", "mix") for ls in sites.layers):
        raise ValueError(f"{card.name} has Post-LN blocks: its stream is renormalized after every sublayer, so "
                         "sublayer writes do not add up to the final stream; use a zoo model for Post-LN DLA")
    tokens = batch_tokens(tokens)
    mask = mask_kwargs(tokens, attention_mask)
    b, t = tokens.shape
    tgt, con = per_batch_tokens(model, target, b, "target"), None
    if contrast is not None:
        con = per_batch_tokens(model, contrast, b, "contrast")
    p = positions(pos, b, t)
    names = [sites.layers[0].resid_pre] + [h for ls in sites.layers for h in (ls.deltas["attn"], ls.deltas["mlp"])]
    labels = ["embed"] + [f"L{l}.{k}" for l in range(sites.n_layers) for k in ("attn", "mlp")]
    fin = sites.final_norm_input or sites.final_resid
    f = frozen_final_norm(model) if sites.final_norm_input is not None else None  # refuses DyT, ... before any forward
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=list(dict.fromkeys(names + [fin])), **mask)
        ar = torch.arange(b)
        comps = torch.stack([cache[n][ar, p] for n in names]).double()  # [C, b, d]
        x = cache[fin][ar, p].double()                                  # [b, d]
        W_U = model.W_U.double()
        u = W_U[:, tgt].T - (W_U[:, con].T if con is not None else 0)
        b_U = model.b_U
        bu = torch.zeros(b, dtype=torch.float64) if b_U is None else (
            b_U.double()[tgt] - (b_U.double()[con] if con is not None else 0))
        metric = logits[ar, p].double()
        cap = getattr(model, "logit_softcap", None)
        if cap:  # Gemma-2 caps logits as cap·tanh(z / cap): the sublayers add up to z, so attribute z
            metric = cap * torch.atanh(metric / cap)
        metric = metric.gather(1, tgt[:, None])[:, 0] - (metric.gather(1, con[:, None])[:, 0] if con is not None else 0)
        if sites.final_norm_input is not None:
            ln = model.ln_final
            if isinstance(ln, NormHooks):  # a transformers norm: the model's own statistics, recomputed on y [..., d]
                s = ln.scale(x).double()
                recomputed = lambda y: model.apply_final_norm(y.to(logits.dtype)).double()
            else:  # a zoo norm: its scale may depend on the position (FakeLN's position-0 divisor)
                s = norm_scale(ln, x, p == 0)
                recomputed = lambda y: f(y, norm_scale(ln, y, p == 0))
            zero = f(torch.zeros_like(x), s)
            dla_c = ((f(comps, s) - zero) * u).sum(-1)
            bias_row = (zero * u).sum(-1)
            full = (recomputed(x) * u).sum(-1) + bu
            de = full - ((recomputed(x[None] - comps) * u).sum(-1) + bu)
        else:  # no final norm: DLA is the direct effect
            dla_c = de = (comps * u).sum(-1)
            bias_row = torch.zeros(b, dtype=torch.float64)
    recs = []
    for j in range(b):
        base = dict(model=card.name, batch=j, pos=int(p[j]), target=int(tgt[j]),
                    contrast=-1 if con is None else int(con[j]), metric=float(metric[j]))
        for i, lab in enumerate(labels):
            layer = -1 if i == 0 else (i - 1) // 2
            recs.append(dict(base, component=lab, kind="embed" if i == 0 else lab.split(".")[1], layer=layer,
                             index=-1, dla=float(dla_c[i, j]), direct_effect=float(de[i, j])))
        recs.append(dict(base, component="ln_final.bias", kind="norm_bias", layer=-1, index=-1,
                         dla=float(bias_row[j]), direct_effect=float("nan")))
        if b_U is not None:
            recs.append(dict(base, component="b_U", kind="unembed_bias", layer=-1, index=-1, dla=float(bu[j]),
                             direct_effect=float("nan")))
    df = pd.DataFrame.from_records(recs)
    df["error"] = df["dla"] - df["direct_effect"]
    df["rel_error"] = df["error"].abs() / df["metric"].abs()
    return df
