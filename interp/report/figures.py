"""Plotly figures of the report, one function per measurement. Each takes canonical tables (see
`interp.report.tables`) and a model → colour map, and returns a figure, or None when its data is absent."""
from __future__ import annotations

import html

from contextlib import contextmanager

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from interp.report.colors import color_for

Colors = dict[str, str]

# Plotly validates a template whole each time one is set: ~7 ms when a figure is built (the default template) and
# ~10 ms more when _style sets plotly_white, for each of the report's ~80 figures. Inside `deferred_templates()`
# figures are built without the default template and `apply_template` only notes the one they get; `figure_html`
# writes it into the figure's JSON, which gives the same HTML.
_DEFERRED = [False]


@contextmanager
def deferred_templates():
    """Build figures without plotly's per-figure template validation; write them with `figure_html`. Inside one
    already, it changes nothing (entered again it would take "no template" for plotly's default)."""
    if _DEFERRED[0]:
        yield
        return
    old = pio.templates.default
    _TEMPLATE_JSON[None] = go.Figure().to_dict()["layout"].get("template")  # the default, as construction sets it
    _DEFERRED[0], pio.templates.default = True, None
    try:
        yield
    finally:
        pio.templates.default, _DEFERRED[0] = old, False


def apply_template(fig: go.Figure, name: str = "plotly_white") -> go.Figure:
    """fig with the plotly template `name` (noted for `figure_html` inside `deferred_templates()`)."""
    if _DEFERRED[0]:
        fig._interp_template = name
    else:
        fig.update_layout(template=name)
    return fig


_TEMPLATE_JSON: dict[str, dict] = {}


def figure_html(fig: go.Figure, **kw) -> str:
    """fig.to_html(**kw); a figure built inside `deferred_templates()` gets its template (the one `apply_template`
    noted, else plotly's default, as when it is built outside) written into its JSON, not validated again."""
    if not _DEFERRED[0] and not hasattr(fig, "_interp_template"):
        return fig.to_html(**kw)
    d = fig.to_dict()
    if "template" in d["layout"]:  # set by update_layout: first in the layout, where construction puts it
        template = d["layout"]["template"]
    else:
        name = getattr(fig, "_interp_template", None)  # None: the default template
        if name not in _TEMPLATE_JSON:  # the template's JSON as a figure holds it (plotly's key order)
            _TEMPLATE_JSON[name] = go.Figure(layout={"template": name}).to_dict()["layout"]["template"]
        template = _TEMPLATE_JSON[name]
    if template is not None:
        d["layout"] = {"template": template, **d["layout"]}
    return pio.to_html(d, validate=False, **kw)


def _c(colors: Colors, model: str) -> str:
    return colors.get(model) or color_for(model)


def label(text: object) -> str:
    """Text safe to put in a plotly label: plotly renders a subset of HTML in labels, so escape it."""
    return html.escape(str(text), quote=False)


# the stream's depth axis: depth ℓ is the stream after ℓ blocks (blocks.ℓ-1's output: blocks count from 0, as in
# the heatmaps' and skip bars' "block ℓ")
DEPTH = "depth ℓ (0 = embeddings, ℓ = after ℓ blocks: the output of block ℓ−1)"


def _bar_text(v: object, fmt: str) -> str:
    """A bar's label: the value, '—' where it is missing (NaN: no bar; the tables print — too, not 'nan')."""
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


def _style(fig: go.Figure, title: str, x: str, y: str, log_y: bool = False, height: int = 440) -> go.Figure:
    apply_template(fig)
    fig.update_layout(title=dict(text=title), height=height, margin=dict(l=60, r=20, t=60, b=50),
                      legend=dict(title="model"))
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y, type="log" if log_y else "linear")
    return fig


def _lines(df: pd.DataFrame, x: str, y: str, colors: Colors, dash_by: str | None = None,
           tags: dict[str, str] | None = None) -> go.Figure:
    """One line per model (and per `dash_by` value), named by the model plus its entry in `tags`."""
    fig = go.Figure()
    for model, g in df.groupby("model", sort=False):
        for key, gg in (g.groupby(dash_by, sort=False) if dash_by else [(None, g)]):
            gg = gg.sort_values(x)
            name = label(f"{model}{(tags or {}).get(model, '')}" + ("" if key is None else f" · {key}"))
            fig.add_trace(go.Scatter(x=gg[x], y=gg[y], mode="lines+markers", name=name,
                                     line=dict(color=_c(colors, model), dash="dot" if key == "resid" else None)))
    return fig


def stream_growth(t: dict, colors: Colors) -> go.Figure | None:
    s = t.get("stream")
    if s is None or s.empty:
        return None
    return _style(_lines(s, "depth", "variance", colors), "Residual-stream variance by depth (all models)",
                  DEPTH, "variance (activation units², log)", log_y=True)


def growth_bars(t: dict, colors: Colors) -> go.Figure | None:
    g = t.get("growth")
    if g is None or g.empty:
        return None
    fig = go.Figure(go.Bar(x=[label(m) for m in g["model"]], y=g["ratio_last_first"],
                           marker_color=[_c(colors, m) for m in g["model"]],
                           text=[_bar_text(v, ".3g") for v in g["ratio_last_first"]], textposition="outside"))
    return _style(fig, "Variance growth: last / first depth", "model", "ratio (×, log)", log_y=True, height=380)


def massive_census(t: dict, colors: Colors) -> go.Figure | None:
    m = t.get("massive")
    if m is None or m.empty:
        return None
    fig = go.Figure()
    for model, g in m.groupby("model", sort=False):
        g = g.sort_values("depth")
        fig.add_trace(go.Scatter(x=g["depth"], y=g["top1"], name=label(f"{model} · top-1 |x|"),
                                 mode="lines+markers", line=dict(color=_c(colors, model))))
        fig.add_trace(go.Scatter(x=g["depth"], y=g["median"], name=label(f"{model} · median |x|"),
                                 mode="lines", line=dict(color=_c(colors, model), dash="dot")))
    return _style(fig, "Massive activations: top-1 and median |x| of the stream (mean over sequences)",
                  DEPTH,
                  "|activation| (log)", log_y=True)


def massive_heatmaps(t: dict, colors: Colors) -> list[go.Figure]:
    """Layer × dimension heatmaps of the per-dimension RMS of the stream: outlier dimensions show as lines."""
    d = t.get("dims_rms")
    if d is None or d.empty:
        return []
    cards = t.get("cards")
    if cards is not None and "family" in cards:  # real models and the zoo's pre-ln (seed 0 where present): one each
        pre = cards.loc[(cards["family"] == "zoo") & (cards.get("strategy") == "pre-ln"), "model"]
        pre = pre[pre == "pre-ln"] if (pre == "pre-ln").any() else pre
        keep = set(cards.loc[cards["family"] != "zoo", "model"]) | set(pre)
        d = d[d["model"].isin(keep)] if keep & set(d["model"]) else d
    figs = []
    for model, g in d.groupby("model", sort=False):
        piv = g.pivot_table(index="layer", columns="dim", values="value", aggfunc="max").sort_index()
        z = np.log10(piv.to_numpy(dtype=float).clip(min=1e-6))
        fig = go.Figure(go.Heatmap(z=z, x=piv.columns, y=piv.index, colorscale="Viridis",
                                   colorbar=dict(title="log10 RMS")))
        figs.append(_style(fig, label(f"{model}: RMS of the stream per layer × dimension"), "residual dimension",
                           "layer (stream leaving block ℓ)", height=320))
    return figs


def gradient_profiles(t: dict, colors: Colors) -> go.Figure | None:
    g = t.get("gradients")
    if g is None or g.empty:
        return None
    kinds = set(g["target"]) if "target" in g else {"params"}
    what = {"params": "block parameters", "resid": "residual stream"}
    title = ("solid: block parameters, dotted: residual stream" if len(kinds) > 1 else
             what.get(next(iter(kinds)), str(next(iter(kinds)))))
    probe = {m: " · probe" for m in probe_models(t) if m in set(g["model"])}
    if probe:
        title += "; · probe: a random probe's gradient, not CE's"
    # `layer`: the block (params) or the stream depth (resid: ℓ = the stream entering block ℓ, L = the last output)
    x = ("block ℓ" if kinds == {"params"} else DEPTH if kinds == {"resid"} else
         "block ℓ (dotted: the stream entering block ℓ; at ℓ = L, the last block's output)")
    return _style(_lines(g, "layer", "grad_norm", colors, dash_by="target" if len(kinds) > 1 else None, tags=probe),
                  f"Gradient norm per layer ({title})", x, "‖∂loss/∂·‖₂ (log)", log_y=True)


def probe_models(t: dict) -> list[str]:
    """Models whose gradients are of the fixed random probe, not of next-token CE (interp.collectors.objective:
    encoders and masked-diffusion models), by the `objective` of their cards."""
    cards = t.get("cards")
    if cards is None or "objective" not in cards:
        return []
    return list(cards.loc[cards["objective"].isin(["encoder", "mdlm"]), "model"])


def angular_heatmap(t: dict, colors: Colors) -> list[go.Figure]:
    a = t.get("angular")
    if a is None or a.empty:
        return []
    a1 = a[a["n"] == 1] if "n" in a else a
    piv = a1.pivot_table(index="model", columns="layer", values="distance", aggfunc="mean")
    piv = piv.reindex([m for m in dict.fromkeys(a1["model"])])
    fig = go.Figure(go.Heatmap(z=piv.to_numpy(dtype=float), x=piv.columns, y=[label(m) for m in piv.index],
                               colorscale="Magma", zmin=0, colorbar=dict(title="arccos(cos)/π")))
    figs = [_style(fig, "Angular distance between consecutive layers (n = 1, last token)", DEPTH,
                   "model", height=120 + 28 * len(piv))]
    if "n" in a and a["n"].nunique() > 1:
        from interp.analysis.subjects import first_seeds
        for model, g in first_seeds(a).groupby("model", sort=False):  # per model: a strategy's seed 0
            p = g.groupby(["layer", "n"])["distance"].mean().unstack("n")
            f = go.Figure(go.Heatmap(z=p.to_numpy(dtype=float).T, x=p.index, y=p.columns, colorscale="Magma",
                                     zmin=0, colorbar=dict(title="arccos(cos)/π")))
            figs.append(_style(f, label(f"{model}: angular distance h_ℓ → h_ℓ+n"), DEPTH, "n (layers ahead)",
                               height=320))
    return figs


def skip_bars(t: dict, colors: Colors) -> go.Figure | None:
    s = t.get("skip")
    if s is None or s.empty:
        return None
    from interp.analysis.subjects import first_seeds
    fig = go.Figure()
    for model, g in first_seeds(s).groupby("model", sort=False):  # a strategy's seed 0, as in every per-model view
        g = g.sort_values("layer")
        fig.add_trace(go.Bar(x=g["layer"], y=g["loss_delta"], name=label(model), marker_color=_c(colors, model)))
    fig.update_layout(barmode="group")
    return _style(fig, "Loss increase when one block is skipped", "skipped block ℓ", "Δ CE (nats)")


NORM_DASH = {"ln1": None, "ln2": "dash", "ln1_post": "dot", "ln2_post": "dashdot", "final": "longdash"}
OTHER_DASH = ("longdashdot", "dot", "dashdot", "dash")


def norm_dash(norm) -> str | None:
    """The line style of a norm in the norm-scale figure: one per norm of a block (Peri-LN's ln1 and ln1_post
    differ), so a model's lines tell its norms apart by dash as the colour tells the models apart."""
    n = str(norm)
    return NORM_DASH[n] if n in NORM_DASH else OTHER_DASH[sum(map(ord, n)) % len(OTHER_DASH)]


def norm_scales(t: dict, colors: Colors) -> go.Figure | None:
    n = t.get("norm_scales")
    if n is None or n.empty:
        return None
    fig = go.Figure()
    for (model, norm), g in n.groupby(["model", "norm"], sort=False):
        g = g.sort_values("layer")
        c = _c(colors, model)
        if {"q05", "q95"} <= set(g.columns):
            fig.add_trace(go.Scatter(x=list(g["layer"]) + list(g["layer"])[::-1],
                                     y=list(g["q95"]) + list(g["q05"])[::-1], fill="toself", line=dict(width=0),
                                     fillcolor=c, opacity=0.15, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=g["layer"], y=g["median"], mode="lines+markers", name=label(f"{model} · {norm}"),
                                 line=dict(color=c, dash=norm_dash(norm))))
    return _style(fig, "Norm scale (hook_scale) per layer: median and 5–95% band", "layer",
                  "divisor: √(var + ε), RMSNorm √(mean x² + ε) (log)", log_y=True)


def dla_error_bars(t: dict, colors: Colors) -> go.Figure | None:
    d = t.get("dla_error")
    if d is None or d.empty:
        return None
    fig = go.Figure()
    for col, name in (("median_rel_error", "median"), ("max_rel_error", "max")):
        fig.add_trace(go.Bar(x=[label(m) for m in d["model"]], y=d[col].clip(lower=1e-17), name=name,
                             marker_color=[_c(colors, m) for m in d["model"]], opacity=1.0 if name == "max" else 0.55))
    fig.update_layout(barmode="group")
    return _style(fig, "DLA error relative to the logit (|DLA − direct effect| / |logit|)", "model",
                  "relative error (log)", log_y=True, height=380)


def dla_example(t: dict, colors: Colors) -> list[go.Figure]:
    """One bar chart per model in the example table: DLA next to the path-ablation direct effect."""
    d = t.get("dla_example")
    if d is None or d.empty:
        return []
    figs = []
    for model, g in d.groupby("model", sort=False):
        what = f" — target {g['target'].iloc[0]!r}" if "target" in g and g["target"].iloc[0] else ""
        fig = go.Figure([go.Bar(x=[label(c) for c in g["component"]], y=g["dla"], name="DLA",
                                marker_color=_c(colors, model)),
                         go.Bar(x=[label(c) for c in g["component"]], y=g["direct_effect"], name="direct effect",
                                marker_color="#999999")])
        fig.update_layout(barmode="group")
        figs.append(_style(fig, label(f"{model}: DLA vs direct effect per component{what}"),
                           "component (largest |DLA| first)", "contribution to the target logit (logit units)"))
    return figs


def logit_lens(t: dict, colors: Colors) -> go.Figure | None:
    d = t.get("logit_lens")
    if d is None or d.empty:
        return None
    return _style(_lines(d, "layer", "prob", colors), "Logit lens: probability of the target per layer (mean over "
                  "positions)", DEPTH, "p(target)")  # its `layer` is the stream depth (interp.attribution.lens)


def training_curves(t: dict, colors: Colors) -> go.Figure | None:
    d = t.get("training")
    if d is None or d.empty:
        return None
    return _style(_lines(d, "step", "loss", colors), "Training loss", "optimizer step", loss_unit(d))


def loss_unit(d: pd.DataFrame, what: str = "") -> str:
    """The axis title of the training losses in `d`: CE, or the MDLM bound where its `objective` column says mdlm."""
    kinds = set(d["objective"]) if "objective" in d else {"causal_lm"}
    return (f"{what}CE (nats/token)" if kinds == {"causal_lm"} else f"{what}MDLM bound (nats/token)"
            if kinds == {"mdlm"} else f"{what + 'loss, ' if what else ''}nats/token: CE; the MDLM bound for masked diffusion")


def lr_sweep(t: dict, colors: Colors) -> go.Figure | None:
    d = t.get("sweep")
    if d is None or d.empty:
        return None
    seeds = d["seed"].nunique() if "seed" in d else 1
    unit = loss_unit(d, "final ")  # before the seeds are pooled (the objective column is not aggregated)
    if seeds > 1:  # one line per strategy: mean over seeds, × if any seed diverged
        agg = {c: ("mean" if c != "diverged" else "any") for c in ("final_loss", "diverged") if c in d}
        d = d.groupby(["model", "lr"], sort=False).agg(agg).reset_index()
    y = "final_loss" if "final_loss" in d else "diverged"
    fig = go.Figure()
    for model, g in d.groupby("model", sort=False):
        g = g.sort_values("lr")
        div = g["diverged"].astype(bool)
        yy = g[y].astype(float).where(~div, np.nan) if y == "final_loss" else g[y].astype(int)
        fig.add_trace(go.Scatter(x=g["lr"], y=yy, mode="lines+markers", name=label(model),
                                 line=dict(color=_c(colors, model))))
        if div.any():  # × just above the runs that finished (a blow-up's loss would squash their curves)
            ok = d.loc[~d["diverged"].astype(bool), y].astype(float)
            fin = ok[np.isfinite(ok)]
            top = float(fin.max()) * 1.05 if y == "final_loss" and not fin.empty else 1.0
            fig.add_trace(go.Scatter(x=g.loc[div, "lr"], y=[top] * int(div.sum()), mode="markers",
                                     name=label(f"{model} · diverged"), showlegend=False,
                                     marker=dict(symbol="x", size=12, color=_c(colors, model))))
    fig.update_xaxes(type="log")
    what = "× = diverged run" if seeds == 1 else f"mean over {seeds} seeds; × = at least one seed diverged"
    return _style(fig, f"Learning-rate sweep: final loss ({what})", "peak learning rate (log)",
                  unit if y == "final_loss" else "diverged (1 = yes)")


def ln_removal(t: dict, colors: Colors) -> go.Figure | None:
    d = t.get("ln_removal")
    if d is None or d.empty:
        return None
    fig = go.Figure()
    for col, name in (("ce_original", "original"), ("ce_vanilla", "vanilla fine-tune"), ("ce_lnfree", "LN-free")):
        fig.add_trace(go.Bar(x=[label(m) for m in d["model"]], y=d[col], name=name,
                             text=[_bar_text(v, ".4f") for v in d[col]], textposition="outside"))
    fig.update_layout(barmode="group")
    return _style(fig, "LN removal: validation CE before and after", "model", "CE (nats)", height=380)
