"""plotly figures for attribution results: DLA against the true direct effect, and the logit lens by depth."""
from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

AXES = {"kl_to_final": "KL(final ‖ lens) (nats)", "target_prob": "target probability",
        "target_logprob": "target log-probability (nats)", "target_rank": "target rank (0 = top)"}


def _esc(text: object) -> str:
    """plotly renders a subset of HTML in titles, legends and hover text: show names as typed."""
    return html.escape(str(text), quote=False)


def dla_scatter(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """DLA (x) vs direct effect (y), one point per component × sequence, one trace per kind; on y = x DLA is exact.

    Names from the data are escaped; `title` is plotly text, used as given."""
    comp = df[df["direct_effect"].notna()]
    fig = go.Figure()
    for kind, g in comp.groupby("kind", sort=False):
        fig.add_trace(go.Scatter(x=g["dla"], y=g["direct_effect"], mode="markers", name=_esc(kind),
                                 text=[_esc(c) for c in g["component"]],
                                 hovertemplate="%{text}<br>DLA %{x:.4g}<br>direct %{y:.4g}"))
    lo = float(min(comp["dla"].min(), comp["direct_effect"].min())) if len(comp) else 0.0
    hi = float(max(comp["dla"].max(), comp["direct_effect"].max())) if len(comp) else 1.0
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dot", color="grey")))
    models = ", ".join(map(_esc, df["model"].unique()))
    fig.update_layout(title=title or f"DLA vs direct effect (path ablation): {models}",
                      xaxis_title="DLA (norm scales frozen)", yaxis_title="direct effect (norms recomputed)")
    return fig


def lens_figure(df: pd.DataFrame, metric: str = "kl_to_final") -> go.Figure:
    """Mean of `metric` (kl_to_final, target_prob, target_rank ...) per depth, one line per model × scale."""
    if metric not in AXES:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(AXES)}")
    fig = go.Figure()
    for (model, scale), g in df.groupby(["model", "scale"], sort=False):
        m = g.groupby("layer")[metric].mean()
        fig.add_trace(go.Scatter(x=m.index, y=m.values, mode="lines+markers", name=f"{_esc(model)} ({_esc(scale)})"))
    fig.update_layout(title=f"logit lens: mean {metric} over sequences and positions, by depth",
                      xaxis_title="stream depth (0 = embeddings)", yaxis_title=AXES[metric])
    return fig
