"""The report's training-dynamics section: variance by depth, per-block gradient norms and the largest |x| / median
by depth at each kept training step of the zoo models that ship weights along training (interp.analysis.dynamics)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from interp.report.figures import Colors, apply_template, label

INTRO = ("The zoo models that keep weights along training (seed 0 of pre-ln, post-ln, peri-ln, mix-ln and lns), "
         "measured at each kept step on the same held-out sequences: step 0 is the seed's initialisation, the last "
         "step the shipped model. What to look for: the Peri-LN paper (abstract; Fig. 1 for Pre-LN) argues that in "
         "Pre-LN the hidden-state variance and the outliers grow as training proceeds, while Peri-LN's "
         "output norms keep the profile balanced; the Curse of Depth argues that Pre-LN's growth with depth is "
         "what leaves deep blocks ineffective. Read the panels left to right for the strategy, light to dark for "
         "training. One seed per strategy: the curves show this run, not a spread over seeds.")


def _step_colors(steps: list[int]) -> dict[int, str]:
    """Light (early) to dark (late) along training, evenly spaced by rank (kept steps bunch early), the same in
    every panel."""
    k = max(1, len(steps) - 1)
    return dict(zip(steps, sample_colorscale("Viridis", [0.9 - 0.9 * i / k for i in range(len(steps))])))


def _panels(df: pd.DataFrame, x: str, y: str, title: str, xlab: str, ylab: str, log_y: bool) -> go.Figure | None:
    """One panel per model, one line per training step (the step's colour shared across panels)."""
    if df is None or df.empty:
        return None
    models = list(dict.fromkeys(df["model"]))
    steps = sorted(int(s) for s in df["step"].unique())
    col = _step_colors(steps)
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[label(m) for m in models])
    for i, m in enumerate(models, 1):
        for step, g in df[df["model"] == m].groupby("step", sort=True):
            g = g.sort_values(x)
            tok = f" ({int(g['tokens'].iloc[0]):,} tokens)" if "tokens" in g and g["tokens"].notna().all() else ""
            fig.add_trace(go.Scatter(x=g[x], y=g[y], mode="lines+markers", name=label(f"step {int(step)}{tok}"),
                                     legendgroup=str(step), showlegend=i == 1, marker={"size": 4},
                                     line={"color": col[int(step)]}), row=1, col=i)
        fig.update_xaxes(title_text=xlab if i == (len(models) + 1) // 2 else "", row=1, col=i)
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_yaxes(title_text=ylab, row=1, col=1)
    apply_template(fig)
    fig.update_layout(title={"text": title}, height=400,
                      margin={"l": 60, "r": 20, "t": 80, "b": 50}, legend={"title": "training step"})
    return fig


def variance_by_step(t: dict) -> go.Figure | None:
    """Residual-stream variance by depth at each kept step, one panel per model."""
    d = t.get("dynamics")
    return _panels(d, "depth", "variance", "Residual-stream variance by depth along training", "depth ℓ",
                   "variance (log)", True) if d is not None else None


def grads_by_step(t: dict) -> go.Figure | None:
    """Per-block gradient norm at each kept step, one panel per model."""
    d = t.get("dynamics_grads")
    return _panels(d, "layer", "grad_norm", "Gradient norm per block along training", "block",
                   "‖∇θ_ℓ CE‖ (log)", True) if d is not None else None


def outliers_by_step(t: dict) -> go.Figure | None:
    """Largest |x| / median |x| by depth at each kept step, one panel per model."""
    d = t.get("dynamics")
    return _panels(d, "depth", "top1_median", "Largest |x| / median |x| of the stream by depth along training",
                   "depth ℓ", "top-1 / median (log)", True) if d is not None else None


def step_table(t: dict) -> pd.DataFrame:
    """Per model × step: var(1), var(L), their ratio, the largest top-1/median over depths and the CV of the
    per-block gradient norms (std/mean), from the dynamics tables."""
    d, g = t.get("dynamics"), t.get("dynamics_grads")
    if d is None or d.empty:
        return pd.DataFrame()
    rows = []
    for (m, step), r in d[d["depth"] >= 1].groupby(["model", "step"], sort=False):
        r = r.sort_values("depth")
        v = r["variance"].to_numpy(dtype=float)
        gg = g[(g["model"] == m) & (g["step"] == step)]["grad_norm"].to_numpy(dtype=float) if g is not None else []
        rows.append({"model": m, "step": int(step), "tokens": int(r["tokens"].iloc[0]), "var_first": v[0],
                     "var_last": v[-1], "ratio_last_first": v[-1] / v[0] if v[0] > 0 else math.nan,
                     "max_top1_median": float(r["top1_median"].max()),
                     "grad_cv": float(np.std(gg) / np.mean(gg)) if len(gg) and np.mean(gg) > 0 else math.nan})
    return pd.DataFrame(rows)


def measured_words(t: dict) -> list[str]:
    """What this run's numbers say, in words (only what the tables show)."""
    from interp.analysis.dynamics import _arrays, variance_rise
    seq = t.get("dynamics_seq")
    if seq is None or seq.empty:
        return []
    out = []
    rise = []
    for m in dict.fromkeys(seq["model"]):
        a = _arrays(t, m)
        if 0 in a and len(a) > 1:
            rise.append(f"{m} {variance_rise(a):+.2f}")
    if rise:
        out.append("Rise of the stream's variance from step 0 to the final step, mean over depths 1..L of "
                   "ln(var final / var step 0), in nats: " + ", ".join(rise) + " (the claims table compares Peri-LN "
                   "with Pre-LN from the first kept step after the LR warm-up instead, with an interval).")
    tab = step_table(t)
    if len(tab):
        prof = [f"{m} " + " → ".join(f"{v:.3g}" for v in g.sort_values("step")["ratio_last_first"])
                for m, g in tab.groupby("model", sort=False)]
        out.append("Depth profile var(L) / var(1) at the kept steps, in order: " + "; ".join(prof) + ". A rise "
                   "of the whole stream and a steeper profile with depth are different things: read both.")
    d = t.get("dynamics")
    if d is not None and not d.empty:
        top = d.loc[d["top1_median"].idxmax()]
        out.append(f"Largest top-1 / median ratio at any depth and step: {top['top1_median']:.3g} ({top['model']}, "
                   f"step {int(top['step'])}, depth {int(top['depth'])}); a massive activation in Sun et al.'s "
                   "sense needs ≥ 1000× the median and |x| > 100.")
    return out


def section(t: dict, colors: Colors, make_section, make_table) -> dict:
    """The section dict (render._section's shape) for training dynamics."""
    tab = step_table(t)
    return make_section("dynamics", "Training dynamics: growth, gradients and outliers along training",
                        INTRO, {"dynamics": "zoo models with checkpoints/step-<N>.safetensors (interp train --zoo "
                                            "ships them for seed 0 of five strategies)"}, t,
                        figs=[variance_by_step(t), grads_by_step(t), outliers_by_step(t)],
                        tables=[make_table(tab, "Along training: growth figures (docs/results.md), the largest "
                                           "top-1 / median and the gradient CV across blocks", swatches=colors)]
                        if len(tab) else [], notes=measured_words(t))
