"""Confidence (entropy) neurons (Stolfo et al. 2024): last-layer neurons that act mainly through the final norm.

Such a neuron writes a large vector that the unembedding barely reads (it lies in W_U's effective null space),
so its direct logit effect is small, yet it changes the final norm's scale and with it the entropy of every
prediction. For each neuron of `layer` (default: last) this measures, on `tokens`:

  write_norm      ‖W_out[:, n]‖
  null_fraction   share of ‖W_out[:, n]‖² in the span of the smallest `null_k` left singular directions of the
                  unembedding as it reads the stream, as TransformerLens folds it for Stolfo et al.: W_U times the
                  final norm's gain, and each write centred when the norm centres (LayerNorm)
  dH_total        mean |Δ entropy| (nats) when the neuron's write is mean-ablated on the direct path only
                  (final residual changed, final norm RECOMPUTED)
  dH_frozen       the same with the final-norm scale FROZEN: the effect that does not go through the scale
  via_scale       dH_total − dH_frozen: the part carried by the final norm's scale

In a model without a final norm (e.g. after LN removal) the two coincide and via_scale is 0 by construction:
this is the sense in which the LN-free paper finds the entropy-neuron mechanism gone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch

from interp.attribution.replay import check_supported, flat_pos0, norm_linear, norm_scale
from interp.norms import LayerNorm

if TYPE_CHECKING:
    from interp.contract import HookedModel


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    lp = logits.log_softmax(-1)
    return -(lp.exp() * lp).sum(-1)


def null_fractions(model, W_out: torch.Tensor, null_k: int | None = None) -> torch.Tensor:
    """Per neuron (column of W_out [d, n]), the share of its write's squared norm in the span of the `null_k`
    (default d // 10) least-read directions of the unembedding as it reads the stream ([n], float64)."""
    W_U, W_out = model.W_U.detach().double(), W_out.detach().double()
    k = null_k or max(1, W_U.shape[0] // 10)
    # as TransformerLens folds it: the final norm's gain into W_U; a centring norm drops each write's mean
    ln = model.ln_final if model.cfg.final_norm else None
    read_U = W_U * ln.w.double()[:, None] if getattr(ln, "w", None) is not None else W_U
    W_read = W_out - W_out.mean(0) if isinstance(ln, LayerNorm) or getattr(ln, "centre", False) else W_out
    U = torch.linalg.svd(read_U, full_matrices=False)[0][:, -k:]         # [d, k] least-read directions
    return (U.T @ W_read).pow(2).sum(0) / W_read.pow(2).sum(0)


def confidence_neurons(model: HookedModel, tokens: torch.Tensor, layer: int = -1, null_k: int | None = None) -> pd.DataFrame:
    """One row per neuron of `layer`, sorted by via_scale (see the module docstring for the columns).

    Zoo models only: it reads the block's MLP weights and neuron activations, which only the zoo names. A final
    norm with no per-token scale to freeze (DyT, TD-LN, PowerNorm, Unified Norm) is refused."""
    from interp.zoo.model import ZooModel
    if not isinstance(model, ZooModel):
        name = getattr(getattr(model, "card", None), "name", type(model).__name__)
        raise ValueError(f"{name} is not a zoo model: confidence_neurons reads zoo MLP neurons "
                         "(blocks.L.mlp.hook_post, mlp.down); convert a GPT-2 with interp.surgery.gpt2_to_zoo.from_gpt2 first")
    n_layers = len(model.blocks)
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer {layer} does not exist; the model has layers 0..{n_layers - 1} (or -1 for the last)")
    layer = layer % n_layers
    blk = model.blocks[layer]
    if blk.placement not in ("pre", "lns", "none"):
        raise ValueError(f"block {layer} is {blk.placement}: neuron writes reach the final norm unchanged only in "
                         "pre / lns / none blocks")
    if model.cfg.final_norm:  # DyT, TD-LN, batch-statistic norms: no per-token scale to freeze (nor to recompute here)
        check_supported(model.ln_final, "ln_final")
    last = f"blocks.{n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=[last, f"blocks.{layer}.mlp.hook_post"])
        x = cache[last].flatten(0, 1).double()                               # [N, d]
        act = cache[f"blocks.{layer}.mlp.hook_post"].flatten(0, 1).double()  # [N, n]
        W_out = blk.mlp.down.weight.double()                                 # [d, n]
        W_U = model.W_U.double()
        b_U = 0 if model.b_U is None else model.b_U.double()
        has_norm = model.cfg.final_norm
        null_frac = null_fractions(model, W_out, null_k)
        pos0 = flat_pos0(tokens)  # FakeLN divides position 0 by its own constant
        if has_norm:
            ln = model.ln_final
            s = norm_scale(ln, x, pos0)
            bias = ln.b.double() if getattr(ln, "b", None) is not None else 0
            read = lambda y, sc: norm_linear(ln, y, sc) + bias
        else:
            s, read = None, (lambda y, sc: y)
        H0 = _entropy(read(x, s) @ W_U + b_U)
        rows = []
        mean_act = act.mean(0)
        for n in range(W_out.shape[1]):
            xa = x + (mean_act[n] - act[:, n])[:, None] * W_out[:, n]
            H_tot = _entropy(read(xa, norm_scale(model.ln_final, xa, pos0) if has_norm else None) @ W_U + b_U)
            H_frz = _entropy(read(xa, s) @ W_U + b_U)
            rows.append(dict(neuron=n, write_norm=float(W_out[:, n].norm()), null_fraction=float(null_frac[n]),
                             dH_total=float((H_tot - H0).abs().mean()), dH_frozen=float((H_frz - H0).abs().mean())))
    df = pd.DataFrame(rows)
    df["via_scale"] = df["dH_total"] - df["dH_frozen"]
    df.insert(0, "layer", layer)
    df.insert(0, "model", model.card.name)
    return df.sort_values("via_scale", ascending=False, ignore_index=True)
