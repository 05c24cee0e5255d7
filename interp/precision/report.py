"""The report's precision section: fp16 headroom per depth, which strategies are fp16-safe, int8 error per layer
with massive and outlier dims marked, and per model the loss change in bf16, fp16 and int8.

Reads the canonical tables `precision`, `precision_outliers`, `precision_runs` (and `massive` for the marks);
`section(t, colors, make_section, make_table)` returns render._section's dict.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.analysis.subjects import first_seeds, group_of
from interp.precision.formats import FP16_MAX
from interp.precision.verdict import verdicts
from interp.report.figures import Colors, _c, _style, label

INTRO = ("Would each model survive fp16, bf16 and int8? From the same fp32 pass as the other collectors: the largest "
         "|x| at every residual site (stream, sublayer outputs, norm inputs) against fp16's largest value 65504 "
         "(headroom = 65504 / max |x|; below 1 the value exceeds it, and from 65520 up it rounds to inf), and the "
         "error int8 absmax "
         "quantization would make, with one scale per sequence or per token. End-to-end, on the first held-out "
         "tokens: the loss of the model cast to bf16 and to fp16 and with every linear input fake-quantized to int8 "
         "(one scale per sequence), against fp32 on the same tokens. An fp16 run that goes non-finite is reported "
         "with loss = inf and the first hook and token where it did, never averaged. Zoo strategies: every seed; "
         "the profile figures show seed 0.")


def layer_headroom(p: pd.DataFrame) -> pd.DataFrame:
    """Per model and block: the fp16 headroom of its tightest site (65504 / max |x| over the block's sites)."""
    g = p.groupby(["model", "layer"], sort=False)["abs_max"].max().reset_index()
    return g.assign(fp16_headroom=FP16_MAX / g["abs_max"])


def headroom_profile(t: dict, colors: Colors) -> go.Figure | None:
    """fp16 headroom per block, one line per model; the dashed line at 1 is fp16's largest finite value (values
    from 65504 to 65520 still round to it; inf from 65520)."""
    p = t.get("precision")
    if p is None or p.empty:
        return None
    h = layer_headroom(first_seeds(p))
    fig = go.Figure()
    for model, g in h.groupby("model", sort=False):
        g = g.sort_values("layer")
        fig.add_trace(go.Scatter(x=g["layer"], y=g["fp16_headroom"], mode="lines+markers", name=label(model),
                                 line={"color": _c(colors, model)}))
    fig.add_hline(y=1.0, line_dash="dash", line_color="#d62728", annotation_text="fp16 max 65504 (inf from 65520)")
    return _style(fig, "fp16 headroom per block: 65504 / the largest |x| at any of its sites", "block ℓ "
                  "(L = the final norm's input)", "headroom (×, log)", log_y=True)


def safety_bars(t: dict, colors: Colors) -> go.Figure | None:
    """log10 headroom per strategy (mean over seeds, bars spanning the seeds) and real model; text: fp16 run."""
    p = t.get("precision")
    if p is None or p.empty:
        return None
    peak = p.groupby("model", sort=False)["abs_max"].max()
    runs = t.get("precision_runs")
    status = {}
    if runs is not None and not runs.empty:
        f16 = runs[runs["format"] == "fp16"]
        status = dict(zip(f16["model"], f16["status"]))
    rows = []
    for grp, models in pd.Series(peak.index, index=peak.index).groupby(lambda m: group_of(m), sort=False):
        v = np.log10(FP16_MAX / peak[list(models)].to_numpy(dtype=float))
        st = [status[m] for m in models if m in status]
        word, status_of = (("overflow", "overflow") if "overflow" in st else ("failed", "error") if "error" in st
                           else ("ok", "ok"))  # a failed run is not ok
        text = f"fp16 run: {word} in {st.count(status_of)} of {len(st)} run(s)" if st else "no fp16 run"
        rows.append({"group": grp, "mean": float(v.mean()), "lo": float(v.min()), "hi": float(v.max()), "n": len(v), "text": text})
    d = pd.DataFrame(rows).sort_values("mean")
    fig = go.Figure(go.Bar(x=[label(g) for g in d["group"]], y=d["mean"],
                           marker_color=[_c(colors, g) for g in d["group"]],
                           error_y={"type": "data", "symmetric": False, "array": d["hi"] - d["mean"],
                                        "arrayminus": d["mean"] - d["lo"]},
                           text=[label(x) for x in d["text"]], textposition="outside",
                           hovertext=[f"{n} model(s)" for n in d["n"]]))
    fig.add_hline(y=0.0, line_dash="dash", line_color="#d62728", annotation_text="fp16 max")
    return _style(fig, "Which strategies are fp16-safe: log10(65504 / max |x|) (bars: range over seeds)",
                  "strategy / model", "decades of headroom (< 0: overflows)", height=460)


def _dims(ids, limit: int = 8) -> str:
    ids = sorted({int(i) for i in ids})
    return ", ".join(map(str, ids[:limit])) + (f" … ({len(ids)} dims)" if len(ids) > limit else "")


def marked_dims(t: dict) -> tuple[dict, dict]:
    """({(model, layer): massive dims of the stream leaving block layer}, {model: LLM.int8() outlier dims of the
    resid_post family}), from the `massive_dims` and `precision_outliers` tables."""
    massive: dict = {}
    m = t.get("massive_dims")
    if m is not None and not m.empty:
        for (model, depth), g in m[m["count"] > 0].groupby(["model", "depth"], sort=False):
            massive[(model, int(depth) - 1)] = g["dim"].tolist()
    o = t.get("precision_outliers")
    feats = {}
    if o is not None and not o.empty:
        feats = {model: g["dim"].tolist() for model, g in o[o["site"] == "resid_post"].groupby("model", sort=False)}
    return massive, feats


def int8_profile(t: dict, colors: Colors) -> go.Figure | None:
    """Mean per-token relative error of int8 (per tensor | per token) on the stream leaving each block; a star
    where the stream carries massive activations, a diamond where LLM.int8() outlier features reach it; the
    hover names the dims."""
    p = t.get("precision")
    if p is None or p.empty:
        return None
    s = first_seeds(p[p["site"] == "resid_post"])
    m = t.get("massive")
    massive = set()
    if m is not None and not m.empty:
        massive = {(r.model, int(r.depth) - 1) for r in m[m["n_massive"] > 0].itertuples()}
    mdims, fdims = marked_dims(t)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("one scale per sequence",
                                                                            "one scale per token"))
    for model, g in s.groupby("model", sort=False):
        g = g.sort_values("layer")
        mass = [(model, int(l)) in massive for l in g["layer"]]
        nfeat = g["n_outlier_features"].fillna(0).astype(int).tolist()
        sym = ["star" if a else "diamond" if b else "circle" for a, b in zip(mass, nfeat)]
        size = [12 if a or b else 5 for a, b in zip(mass, nfeat)]
        hover = []
        for l, a, b in zip(g["layer"], mass, nfeat):
            h = [f"{label(model)}, block {int(l)}"]
            if a:
                h.append("massive activations in dims " + (_dims(mdims.get((model, int(l)), [])) or "?"))
            if b:
                h.append(f"{b} LLM.int8() outlier feature(s) of dims {_dims(fdims.get(model, []))}")
            hover.append("<br>".join(h))
        for col, y in ((1, "int8_tensor_token_error"), (2, "int8_token_token_error")):
            fig.add_trace(go.Scatter(x=g["layer"], y=g[y], mode="lines+markers", name=label(model),
                                     legendgroup=model, showlegend=col == 1, line={"color": _c(colors, model)},
                                     marker={"symbol": sym, "size": size}, text=hover,
                                     hovertemplate="%{text}<br>error %{y:.3g}<extra></extra>"), row=1, col=col)
    fig.update_yaxes(type="log", title_text="mean ‖q(x_t) − x_t‖ / ‖x_t‖", col=1)
    fig.update_xaxes(title_text="block ℓ (stream leaving it)")
    fig.update_layout(template="plotly_white", height=440, margin={"l": 60, "r": 20, "t": 80, "b": 50},
                      title={"text": "int8 absmax error on the stream (★ massive activations, ◆ LLM.int8() "
                                      "outlier features; hover: their dims)"})
    return fig


def delta_table(t: dict) -> pd.DataFrame:
    """Per model: fp16-safe?, where it overflows, and Δloss in bf16 / fp16 / int8 (the verdict table's core)."""
    p, runs = t.get("precision"), t.get("precision_runs")
    if p is None or p.empty:
        return pd.DataFrame()
    v = verdicts(p, runs if runs is not None and not runs.empty else None)
    keep = ["model", "fp16_headroom", "fp16_safe", "fp16_overflow_at", "delta_bf16", "delta_fp16", "delta_int8",
            "top1_fp16", "top1_int8", "max_int8_token_error", "n_outlier_features"]
    return v[keep]


def notes(t: dict) -> list[str]:
    """What did not run in each format, once per distinct note; run costs relative to fp32."""
    runs = t.get("precision_runs")
    if runs is None or runs.empty:
        return []
    out = [f"{f}: {n}" for f, n in runs[["format", "fp32_ops"]].drop_duplicates().itertuples(index=False) if n]
    cost = runs.groupby("format")[["seconds", "seconds_fp32"]].sum()
    out += [f"{f}: forward time {r.seconds / r.seconds_fp32:.2f}× fp32 over all models" for f, r in cost.iterrows()
            if r.seconds_fp32 > 0 and math.isfinite(r.seconds)]
    return out


def section(t: dict, colors: Colors, make_section, make_table) -> dict:
    """The section dict (render._section's shape)."""
    tab = delta_table(t)
    return make_section("precision", "Precision: fp16, bf16 and int8", INTRO,
                        {"precision": "run interp collect with interp.collectors.Precision",
                         "precision_runs": "end-to-end runs (interp precision MODEL -o DIR)"}, t,
                        figs=[headroom_profile(t, colors), safety_bars(t, colors), int8_profile(t, colors)],
                        tables=[make_table(tab, "Per model: fp16 safety and the loss change in each format (Δ in "
                                                "nats vs fp32; encoders and MDLM: relative error of the output; "
                                                "inf: the fp16 run overflowed)", swatches=colors)]
                        if len(tab) else [], notes=notes(t))
