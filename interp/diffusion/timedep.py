"""γ(t) and β(t) of every time-conditioned norm: TD-LN's p(t) = s·p0 + (1 − s)·p1, adaLN's 1 + scale(t), shift(t).

Tidy frame `norm_params_over_t`: model, norm (module name: blocks.{l}.ln1 / ln2 / ln_final), layer (block index;
n_layers for ln_final), kind (tdln / adaln), t, channel, gamma, beta. `norm_motion` summarises how far each norm
moves over t ∈ [0, 1], per norm:
  gamma_range  RMS over channels of max_t γ − min_t γ       beta_range  the same for β
  gamma_rms    RMS over channels and t of γ                  gamma_rel   gamma_range / gamma_rms
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from interp.norms import AdaLayerNorm, TDLayerNorm

T_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 4))


def conditioned_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, norm) of every norm whose parameters depend on t (TD-LN, adaLN), in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (TDLayerNorm, AdaLayerNorm))]


def _layer(name: str, n_layers: int) -> int:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" else n_layers


@torch.no_grad()
def norm_params_over_t(model: nn.Module, ts: tuple[float, ...] = T_GRID) -> pd.DataFrame:
    """γ(t), β(t) per channel of every conditioned norm of `model` at each t in `ts` (see the module docstring);
    an empty frame when no norm depends on t (e.g. mdlm-ln, where t only enters as an added embedding)."""
    norms = conditioned_norms(model)
    cols = ["model", "norm", "layer", "kind", "t", "channel", "gamma", "beta"]
    if not norms:
        return pd.DataFrame(columns=cols)
    p = next(model.parameters())
    t = torch.tensor(ts, dtype=p.dtype, device=p.device)
    if any(isinstance(m, AdaLayerNorm) for _, m in norms):
        c = F.silu(model.t_embed(t))  # what the model hands its adaLN norms
    name, n_layers = model.card.name, model.cfg.n_layers
    frames = []
    for nm, m in norms:
        kind = "tdln" if isinstance(m, TDLayerNorm) else "adaln"
        gamma, beta = m.params(t) if kind == "tdln" else m.params(c)  # [n_t, d] each
        n_t, d = gamma.shape
        frames.append(pd.DataFrame({
            "model": name, "norm": nm, "layer": _layer(nm, n_layers), "kind": kind,
            "t": np.repeat(np.asarray(ts, dtype=float), d), "channel": np.tile(np.arange(d), n_t),
            "gamma": gamma.double().cpu().numpy().ravel(), "beta": beta.double().cpu().numpy().ravel()}))
    return pd.concat(frames, ignore_index=True)[cols]


def norm_motion(params: pd.DataFrame) -> pd.DataFrame:
    """Per model × norm: gamma_range, beta_range, gamma_rms, gamma_rel (see the module docstring), in depth order
    (by model, then layer, ln1 before ln2, ln_final last) whatever the row order of `params`."""
    rows = []
    for (model, norm), g in params.groupby(["model", "norm"], sort=False):
        span = g.groupby("channel").agg(g_lo=("gamma", "min"), g_hi=("gamma", "max"), b_lo=("beta", "min"),
                                        b_hi=("beta", "max"))
        g_range = float(np.sqrt(((span.g_hi - span.g_lo) ** 2).mean()))
        g_rms = float(np.sqrt((g.gamma ** 2).mean()))
        rows.append({"model": model, "norm": norm, "layer": int(g.layer.iloc[0]), "kind": g.kind.iloc[0],
                     "gamma_range": g_range, "beta_range": float(np.sqrt(((span.b_hi - span.b_lo) ** 2).mean())),
                     "gamma_rms": g_rms, "gamma_rel": g_range / g_rms if g_rms > 0 else float("nan")})
    out = pd.DataFrame(rows, columns=["model", "norm", "layer", "kind", "gamma_range", "beta_range", "gamma_rms",
                                      "gamma_rel"])
    return out.sort_values(["model", "layer", "norm"], kind="stable").reset_index(drop=True)
