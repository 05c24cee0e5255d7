"""The report's section on the norms 2022–2025 models ship (QK-norm, OLMo-2's reordered block, DeepNorm):
where each sits beside the seed strategies, the attention-logit scale, and the LR sweep's logits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from interp.report.figures import Colors, _c, _lines, _style, label
from interp.zoo.catalog import catalog_table

NEW = ("pre-rmsnorm-qk", "reordered", "deepnorm")
INTRO = ("QK-norm divides each head's query and key by their RMS before q·k, so |q·k|/√d_head ≤ √d_head · "
         "g_q · g_k (the gains); OLMo-2 also moves the block norms from the sublayer inputs to their outputs; "
         "DeepNorm keeps Post-LN but up-weights the residual (α) and shrinks the init (β) so the model update "
         "stays bounded. The table places them beside the seed strategies; the figures show the largest "
         "attention logit per layer on held-out text and, in the LR sweep, at the end of each short run.")


def attn_logit_profile(t: dict, colors: Colors) -> go.Figure | None:
    """Largest |q·k|/√d_head per layer (over heads), one line per model."""
    d = t.get("attn_logits")
    if d is None or d.empty:
        return None
    top = d.groupby(["model", "layer"], sort=False)["max_abs_logit"].max().reset_index()
    return _style(_lines(top, "layer", "max_abs_logit", colors), "Largest attention logit per layer",
                  "layer", "max |q·k|/√d_head (log)", log_y=True)


def sweep_attn_logits(t: dict, colors: Colors) -> go.Figure | None:
    """The sweep's max attention logit against the peak learning rate (mean over seeds, finite runs)."""
    d = t.get("sweep")
    if d is None or d.empty or "max_attn_logit" not in d:
        return None
    d = d[np.isfinite(d["max_attn_logit"].astype(float))]
    if d.empty:
        return None
    g = d.groupby(["model", "lr"], sort=False)["max_attn_logit"].mean().reset_index()
    fig = go.Figure()
    for model, r in g.groupby("model", sort=False):
        r = r.sort_values("lr")
        fig.add_trace(go.Scatter(x=r["lr"], y=r["max_attn_logit"], mode="lines+markers", name=label(model),
                                 line=dict(color=_c(colors, model), dash=None if model in NEW else "dot")))
    fig.update_xaxes(type="log")
    return _style(fig, "LR sweep: largest attention logit after each run (mean over seeds)",
                  "peak learning rate (log)", "max |q·k|/√d_head (log)", log_y=True)


def placement_table(t: dict) -> pd.DataFrame:
    """The catalog rows of the strategies in this report (all of them when the report has no zoo cards)."""
    cards = t.get("cards")
    have = None
    if cards is not None and "strategy" in cards:
        have = set(cards["strategy"].dropna()) | set(NEW)
    return catalog_table(sorted(have) if have else None)  # catalog order


def section(t: dict, colors: Colors, make_section, make_table) -> dict:
    """The section dict (render._section's shape) for the newer norms."""
    tab = placement_table(t)
    return make_section("modern-norms", "Newer norms: QK-norm, reordered (OLMo-2), DeepNorm", INTRO,
                        {"attn_logits": "run interp collect with --collectors attn_logits (in Python: "
                                        "interp.collectors.AttnLogits)"}, t,
                        figs=[attn_logit_profile(t, colors), sweep_attn_logits(t, colors)],
                        tables=[make_table(tab, "Where the norm sits, strategy by strategy")] if len(tab) else [])
