"""plotly figures for attribution results: DLA against the true direct effect, and the logit lens by depth."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def dla_scatter(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """DLA (x) vs direct effect (y), one point per component × sequence, one trace per kind; on y = x DLA is exact."""
    comp = df[df["direct_effect"].notna()]
    fig = go.Figure()
    for kind, g in comp.groupby("kind", sort=False):
        fig.add_trace(go.Scatter(x=g["dla"], y=g["direct_effect"], mode="markers", name=str(kind),
                                 text=g["component"], hovertemplate="%{text}<br>DLA %{x:.4g}<br>direct %{y:.4g}"))
    lo = float(min(comp["dla"].min(), comp["direct_effect"].min())) if len(comp) else 0.0
    hi = float(max(comp["dla"].max(), comp["direct_effect"].max())) if len(comp) else 1.0
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dot", color="grey")))
    models = ", ".join(map(str, df["model"].unique()))
    fig.update_layout(title=title or f"DLA vs direct effect (path ablation): {models}",
                      xaxis_title="DLA (final-norm scale frozen)", yaxis_title="direct effect (norm recomputed)")
    return fig


def lens_figure(df: pd.DataFrame, metric: str = "kl_to_final") -> go.Figure:
    """Mean of `metric` (kl_to_final, target_prob, target_rank ...) per depth, one line per model × scale."""
    metrics = ("kl_to_final", "target_prob", "target_logprob", "target_rank")
    if metric not in metrics:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(metrics)}")
    fig = go.Figure()
    for (model, scale), g in df.groupby(["model", "scale"], sort=False):
        m = g.groupby("layer")[metric].mean()
        fig.add_trace(go.Scatter(x=m.index, y=m.values, mode="lines+markers", name=f"{model} ({scale})"))
    fig.update_layout(title=f"logit lens: {metric} by depth", xaxis_title="stream depth (0 = embeddings)",
                      yaxis_title=metric)
    return fig
