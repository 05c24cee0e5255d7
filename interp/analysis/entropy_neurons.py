"""Entropy (confidence) neurons before and after LN removal (Stolfo et al. 2024; Baroni et al. 2025).

An entropy neuron of the last MLP layer writes a large vector into the part of the stream the unembedding
barely reads, so it changes the prediction's entropy mainly through the final norm's scale. The measurement
follows `interp.attribution.confidence` for a few chosen neurons only:
  candidates   the K neurons of the original (pre-ln) model's last layer with the largest ‖W_out[:, n]‖ ×
               (share of ‖W_out[:, n]‖² in the span of the least-read tenth of directions of W_U as it reads
               the stream: the final norm's gain folded in, writes centred for LayerNorm;
               `interp.attribution.confidence.null_fractions`): Stolfo et al.'s selection, from the weights alone
  dH           mean over held-out tokens of |ΔH| (nats) when the neuron's activation is set to its mean, on the
               direct path (final residual changed, final norm recomputed when the model has one)
  via_scale    dH − the same with the final norm's scale frozen: the part carried by the scale
The same neuron indices are measured in the LN-free model and in its vanilla fine-tune control (both fine-tuned
from the original, so a neuron keeps its index).
  entropy_neuron_effect  ln(mean dH of the candidates in the LN-free model / in the vanilla control), paired by
                         seed; not testable when the candidates do not act mainly through the norm in the original
                         (via_scale < half of dH): the model has no entropy neurons to lose.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from interp.analysis.intervals import NotTestable, over_seeds
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need, seed_of
from interp.attribution.confidence import null_fractions
from interp.attribution.replay import flat_pos0, norm_linear, norm_scale

K = 5


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    lp = logits.log_softmax(-1)
    return -(lp.exp() * lp).sum(-1)


def candidates(model, k: int = K) -> list[int]:
    """The k last-layer neurons of `model` with the largest write norm × null-space share (weights only)."""
    W_out = model.blocks[-1].mlp.down.weight.detach().double()          # [d, n]
    return torch.topk(W_out.norm(dim=0) * null_fractions(model, W_out), k).indices.tolist()


@torch.no_grad()
def neuron_effects(model, tokens: torch.Tensor, neurons: list[int]) -> pd.DataFrame:
    """One row per neuron: dH and via_scale (see the module docstring) on `tokens`."""
    L = len(model.blocks)
    last, post = f"blocks.{L - 1}.hook_resid_post", f"blocks.{L - 1}.mlp.hook_post"
    _, cache = model.run_with_cache(tokens, names_filter=[last, post])
    x = cache[last].flatten(0, 1).double()
    act = cache[post].flatten(0, 1).double()
    W_out, W_U = model.blocks[-1].mlp.down.weight.double(), model.W_U.double()
    b_U = 0 if model.b_U is None else model.b_U.double()
    pos0 = flat_pos0(tokens)  # FakeLN divides position 0 by its own constant
    if model.cfg.final_norm:
        ln = model.ln_final
        bias = ln.b.double() if getattr(ln, "b", None) is not None else 0
        read = lambda y, s: norm_linear(ln, y, s) + bias
        scale = lambda y: norm_scale(ln, y, pos0)
    else:
        read, scale = (lambda y, s: y), (lambda y: None)
    s0 = scale(x)
    H0 = _entropy(read(x, s0) @ W_U + b_U)
    rows = []
    for n in neurons:
        xa = x + (act[:, n].mean() - act[:, n])[:, None] * W_out[:, n]
        dH = float((_entropy(read(xa, scale(xa)) @ W_U + b_U) - H0).abs().mean())
        dF = float((_entropy(read(xa, s0) @ W_U + b_U) - H0).abs().mean())
        rows.append({"neuron": n, "dH": dH, "via_scale": dH - dF})
    return pd.DataFrame(rows)


def entropy_neuron_table(models: dict[str, tuple[str, object]], tokens: torch.Tensor) -> pd.DataFrame:
    """entropy_neurons rows for one seed: models = {role: (model name, model)} with roles original, lnfree,
    vanilla; candidates chosen on the original."""
    neurons = candidates(models["original"][1])
    return pd.concat([neuron_effects(m, tokens, neurons).assign(model=name, role=role)
                      for role, (name, m) in models.items()], ignore_index=True)


@metric("entropy_neuron_effect", "ln(mean entropy effect |ΔH| of the original's top-5 entropy-neuron candidates "
        "in the LN-free model / in the vanilla control), mean-ablation on the direct path, paired by seed",
        "LN-free GPT-2 (Baroni et al. 2025); entropy neurons (Stolfo et al. 2024)")
def entropy_neuron_effect(t, subject: Subject, ref: Subject | None = None):
    """Whether the LN-free model's entropy neurons lost their effect, against the vanilla control."""
    need(t, "entropy_neurons", subject.models, "entropy-neuron measurement (original, LN-free, vanilla)")
    vals, why, absent = [], [], []
    for m in subject.models:
        seed = seed_of(m)
        g = t["entropy_neurons"][t["entropy_neurons"]["model"].map(seed_of) == seed]
        by = {r: g[g.role == r] for r in ("original", "lnfree", "vanilla")}
        if any(v.empty for v in by.values()):
            absent.append(f"seed {seed} (no {', '.join(r for r, v in by.items() if v.empty)} rows)")
            continue
        o = by["original"]
        if o[["dH", "via_scale"]].isna().any(axis=None):  # pandas' sums skip NaN: whether it has any is unknown
            vals.append(math.nan)
            continue
        if o["via_scale"].sum() < 0.5 * o["dH"].sum():
            why.append(f"seed {seed}: the original's candidates change the entropy by {o['dH'].mean():.3g} nats, "
                       f"{o['via_scale'].sum() / max(o['dH'].sum(), 1e-300):.0%} of it through the final norm")
            continue
        a, b = by["lnfree"]["dH"].mean(skipna=False), by["vanilla"]["dH"].mean(skipna=False)  # a NaN neuron: NaN
        vals.append(math.log(a / b) if a > 0 and b > 0 else math.nan)
    if not vals:
        raise NotTestable("no entropy neurons to lose: " + "; ".join(why) if why else
                          f"no seed of {subject.label} has the original, LN-free and vanilla models measured")
    est = over_seeds(vals)
    # a seed whose original has no entropy neurons cannot lose them, one not measured says nothing: both are said,
    # not silently left out
    est.detail = "; ".join(([f"left out, no entropy neurons to lose: {'; '.join(why)}"] if why else []) +
                           ([f"left out, not measured: {'; '.join(absent)}"] if absent else []))
    return est
