"""The report's masked-diffusion section: the MDLM zoo (mdlm-tdln, mdlm-adaln, mdlm-ln) measured in the report run.

`mdlm_tables(model, tokens)` measures one MDLM model on the held-out tokens (tables documented in
`interp.report.tables`): the bound at fixed t and its integral (`interp.train.mdlm.mdlm_eval`), γ(t), β(t) of the
conditioned norms (`interp.diffusion`), the conditioning parameter count and, with `fixed_t`, the residual
variance and massive activations of the collectors run at fixed t. `mdlm_section(tables, colors)` renders them.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp.report.figures import label  # plotly renders HTML in labels: every name goes through it

TS_COLLECT = (0.0, 0.25, 0.5, 0.75, 1.0)
INTRO = ("Masked diffusion (MDLM, linear schedule): each token but the first is masked with probability t and the "
         "bidirectional model predicts the masked ones; its loss bounds −log p per token. The three strategies "
         "differ only in how t enters: TD-LN (every norm's γ, β move with t), adaLN-Zero (DiT: norms without "
         "affine modulated by an MLP of a t-embedding, gated block outputs) and an added t-embedding only "
         "(plain LayerNorm); mdlm-uncond, when trained, is told nothing about t. In absorbing-state diffusion the "
         "optimal prediction of the masked tokens depends only on the visible ones, not on t (Ou et al. 2024, "
         "RADD; the mask count also reveals t), so these models test the norms as trainable layers more than the "
         "value of knowing t. Held-out bound per token at fixed t and its integral over t (NELBO); γ(t), β(t) of "
         "the conditioned norms; variance growth and massive activations with the collectors run at fixed t "
         "(inputs masked at that rate, cond = t; masked and unmasked positions pooled).")


def mdlm_tables(model, tokens: torch.Tensor, log: Callable[[str], None] = print, fixed_t: bool = True,
                batch_size: int = 8, source: Path | None = None) -> dict[str, pd.DataFrame]:
    """The MDLM tables of one model on held-out `tokens` [n, T] (BOS first); `source`: its checkpoint directory,
    whose training record gives the training wall time and steps."""
    import json
    import time

    from interp.data.batches import Batch
    from interp.diffusion import collect_over_t, norm_motion, norm_params_over_t
    from interp.report.inputs import tables_from_results
    from interp.train.mdlm import mdlm_eval
    from interp.zoo.conditioning import conditioning_parameters
    name, t0 = model.card.name, time.perf_counter()
    batches = [Batch(tokens[i:i + batch_size], tokens[i:i + batch_size], torch.zeros(len(tokens[i:i + batch_size])))
               for i in range(0, len(tokens), batch_size)]
    ev = mdlm_eval(model, batches, n_t=10, extra_t=(1.0,), n_draws=2)
    cp = conditioning_parameters(model)
    params = norm_params_over_t(model)
    rec = {}
    if source is not None and (Path(source) / "config.json").is_file():
        rec = json.loads((Path(source) / "config.json").read_text()).get("training") or {}
    out = {"mdlm_bound": ev.per_t.assign(model=name), "mdlm_seq": ev.per_seq.assign(model=name),
           "mdlm_cond_params": pd.DataFrame([{
               "model": name, "strategy": model.cfg.strategy, "n_params": sum(p.numel() for p in model.parameters()),
               "cond_params": cp["total"], "t_embed": cp["t_embed"], "adaln": cp["adaln"], "tdln": cp["tdln"],
               "nelbo": ev.nelbo, "nelbo_sem": ev.nelbo_sem, "train_wall_s": rec.get("train_wall_s", np.nan),
               "steps": rec.get("steps", np.nan)}])}
    if not params.empty:
        out["mdlm_norm_t"], out["mdlm_norm_motion"] = params, norm_motion(params)
    log(f"{name}: MDLM bound at {len(ev.per_t)} values of t (NELBO {ev.nelbo:.3f} ± {ev.nelbo_sem:.3f}) and "
        f"γ(t), β(t) of {params['norm'].nunique() if not params.empty else 0} norms in {time.perf_counter() - t0:.1f} s")
    if fixed_t:
        t0 = time.perf_counter()
        for t, res in collect_over_t(model, tokens, TS_COLLECT, batch_size=batch_size, progress=False).items():
            tab = tables_from_results([res])
            for src, dst in (("stream", "mdlm_stream_t"), ("massive", "mdlm_massive_t")):
                if src in tab:
                    out.setdefault(dst, []).append(tab[src].assign(t=t))
        for k in ("mdlm_stream_t", "mdlm_massive_t"):
            if k in out:
                out[k] = pd.concat(out[k], ignore_index=True)
        log(f"{name}: residual statistics and massive activations at t = {', '.join(map(str, TS_COLLECT))} in "
            f"{time.perf_counter() - t0:.1f} s")
    return out


def _strategy(t: dict, model: str) -> str:
    cards = t.get("cards")
    if cards is not None and "strategy" in cards:
        row = cards.loc[cards["model"] == model, "strategy"]
        if len(row) and isinstance(row.iloc[0], str):
            return row.iloc[0]
    return model.split(".seed")[0]


def bound_figure(t: dict, colors: dict[str, str]) -> go.Figure | None:
    """Held-out bound per token against t, one line per model (seeds dashed)."""
    b = t.get("mdlm_bound")
    if b is None or b.empty:
        return None
    fig = go.Figure()
    for model, g in b.groupby("model", sort=True):
        g = g.sort_values("t")
        fig.add_scatter(x=g["t"], y=g["bound"], name=label(model), mode="lines+markers",
                        line={"color": colors.get(model), "dash": "dot" if ".seed" in model else "solid"},
                        error_y={"type": "data", "array": g["bound_sem"], "visible": True, "thickness": 1})
    fig.update_layout(title="Held-out MDLM bound at fixed t", xaxis_title="t (mask probability)",
                      yaxis_title="(1/t)·Σ masked CE / L (nats/token)", height=420)
    return fig


def motion_figure(t: dict, colors: dict[str, str]) -> go.Figure | None:
    """How far each conditioned norm's γ and β move over t ∈ [0, 1], by depth (layer, ln1 before ln2, ln_final
    last), whatever the row order of the table."""
    m = t.get("mdlm_norm_motion")
    if m is None or m.empty:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("γ: RMS over channels of max_t γ − min_t γ",
                                                        "β: RMS over channels of max_t β − min_t β"))
    for model, g in m.groupby("model", sort=True):
        g = g.sort_values(["layer", "norm"], kind="stable")
        x = list(range(len(g)))
        for col, key in ((1, "gamma_range"), (2, "beta_range")):
            fig.add_scatter(x=x, y=g[key], name=label(model), legendgroup=label(model), showlegend=col == 1,
                            mode="lines+markers", text=[label(n) for n in g["norm"]],
                            line={"color": colors.get(model), "dash": "dot" if ".seed" in model else "solid"},
                            row=1, col=col)
    fig.update_xaxes(title_text="norm (ln1, ln2 of each block in depth order, then ln_final)")
    fig.update_layout(title="How much each norm's parameters depend on t", height=420)
    return fig


def gamma_heatmaps(t: dict) -> go.Figure | None:
    """Seed 0 of each conditioned strategy: RMS over channels of γ(t) − γ(0), per norm (rows) and t (columns)."""
    p = t.get("mdlm_norm_t")
    if p is None or p.empty:
        return None
    models = sorted(m for m in p["model"].unique() if ".seed" not in m) or sorted(p["model"].unique())[:2]
    fig = make_subplots(rows=1, cols=len(models), subplot_titles=[f"{label(m)}: RMS_c γ(t) − γ(0)" for m in models],
                        horizontal_spacing=0.22)
    for i, model in enumerate(models, 1):
        g = p[p["model"] == model]
        wide = g.pivot_table(index=["layer", "norm", "channel"], columns="t", values="gamma")
        dev = wide.sub(wide[wide.columns.min()], axis=0).pow(2).groupby(level=["layer", "norm"], sort=True).mean()
        dev = np.sqrt(dev)
        fig.add_heatmap(z=dev.to_numpy(), x=[f"{c:g}" for c in dev.columns], y=[label(n) for _, n in dev.index],
                        colorscale="Viridis", row=1, col=i,  # each its own scale: TD-LN moves far less than adaLN
                        colorbar={"x": fig.layout[f"xaxis{i if i > 1 else ''}"].domain[1] + 0.01, "len": 0.9,
                                  "thickness": 12})
    fig.update_layout(title="γ(t) of every conditioned norm, relative to t = 0 (each panel its own colour scale)",
                      height=520)
    return fig


def over_t_figure(t: dict, table: str, y: str, title: str, ytitle: str, log_y: bool = True) -> go.Figure | None:
    """Seed-0 models: `y` of `table` against depth, one line per t (subplots by model)."""
    d = t.get(table)
    if d is None or d.empty:
        return None
    models = sorted(m for m in d["model"].unique() if ".seed" not in m) or sorted(d["model"].unique())
    fig = make_subplots(rows=1, cols=len(models), subplot_titles=[label(m) for m in models], shared_yaxes=True)
    ts = sorted(d["t"].unique())
    shades = [f"rgba(31,119,180,{0.25 + 0.75 * k / max(1, len(ts) - 1):.2f})" for k in range(len(ts))]
    for i, model in enumerate(models, 1):
        for k, tv in enumerate(ts):
            g = d[(d["model"] == model) & (d["t"] == tv)].sort_values("depth")
            fig.add_scatter(x=g["depth"], y=g[y], name=f"t = {tv:g}", legendgroup=f"t{tv}", showlegend=i == 1,
                            mode="lines+markers", line={"color": shades[k]}, row=1, col=i)
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_yaxes(title_text=ytitle, row=1, col=1)
    fig.update_xaxes(title_text="depth")
    fig.update_layout(title=title, height=420)
    return fig


def summary_table(t: dict) -> pd.DataFrame | None:
    """Per strategy: seeds, NELBO mean ± sd over seeds, parameters, conditioning parameters, training wall time
    (mean over seeds) and steps."""
    c = t.get("mdlm_cond_params")
    if c is None or c.empty:
        return None
    rows = []
    for s, g in c.groupby("strategy", sort=True):
        rows.append({"strategy": s, "seeds": len(g), "nelbo_mean": g["nelbo"].mean(),
                     "nelbo_sd": g["nelbo"].std(ddof=1) if len(g) > 1 else np.nan,
                     "n_params": int(g["n_params"].iloc[0]), "cond_params": int(g["cond_params"].iloc[0]),
                     "train_wall_s_mean": g["train_wall_s"].mean(), "steps": g["steps"].max()})
    return pd.DataFrame(rows)


def mdlm_section(t: dict, colors: dict[str, str]) -> dict:
    """The report section (render's section dict)."""
    from interp.report.render import _section, _table
    summ = summary_table(t)
    return _section("mdlm", "Time conditioning in masked diffusion (TD-LN, adaLN-Zero, added embedding)", INTRO,
                    {"mdlm_bound": "MDLM zoo models (mdlm-tdln, mdlm-adaln, mdlm-ln) in data/zoo"}, t,
                    figs=[bound_figure(t, colors), motion_figure(t, colors), gamma_heatmaps(t),
                          over_t_figure(t, "mdlm_stream_t", "variance", "Residual variance by depth at fixed t",
                                        "variance"),
                          over_t_figure(t, "mdlm_massive_t", "top1", "Largest |x| by depth at fixed t",
                                        "top-1 |x| (mean over sequences)")],
                    tables=[_table(summ, "NELBO on held-out text (nats/token; sd over seeds), parameter counts and training wall time (s)")]
                    if summ is not None else [])
