"""The report's sections, in page order: one builder per section, `(t, colors) -> section dict` (`_section`'s
shape: id, title, intro, missing, figures as HTML, tables, notes), on the `complete` canonical tables `t`.

Builders are independent of each other, so `build` can run some of them on another process while this one
runs the rest (`render_html` with a pool: the main job's idle worker); the claims and the run log are not
here, render.py adds them.
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from interp.report import figures as F

Colors = dict[str, str]
COLLECT = "run interp collect"
MAIN = "the main job measures it: interp report --default"  # interp report <dirs> cannot read it from folders


def _table(df: pd.DataFrame, caption: str = "", swatches: dict[str, str] | None = None,
           verdict_col: str | None = None) -> dict:
    cols = [str(c) for c in df.columns]
    rows = [[(v.item() if hasattr(v, "item") else v) for v in r] for r in df.itertuples(index=False)]
    return dict(caption=caption, columns=cols, rows=rows, swatches=swatches or {},
                swatch_index=cols.index("model") if swatches and "model" in cols else -1,
                row_class=verdict_col is not None, row_class_index=cols.index(verdict_col) if verdict_col else 0)


def _fig_html(fig: go.Figure | None) -> list[str]:
    return [] if fig is None else [F.figure_html(fig, full_html=False, include_plotlyjs=False,
                                                 config={"displaylogo": False, "responsive": True})]


def _section(sid: str, title: str, intro: str, need: dict[str, str], t: dict, figs=(), tables=(), notes=()):
    missing = [f"Missing: no {what} in these results ({how})." for what, how in
               [(k, v) for k, v in need.items() if t.get(k.split(" ")[0]) is None or t[k.split(" ")[0]].empty]]
    figures = [h for f in figs for h in (_fig_html(f) if not isinstance(f, list) else
                                         [x for ff in f for x in _fig_html(ff)])]
    return dict(id=sid, title=title, intro=intro, missing=missing, figures=figures, tables=list(tables),
                notes=list(notes))


def _shown_tokens(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """df with its token column `col` as Python literals ('\\n', ' the'): a newline, space or leading space
    printed as it is shows as an empty or indistinguishable cell."""
    return df.assign(**{col: df[col].map(lambda v: repr(v) if isinstance(v, str) else v)}) if col in df else df


def _top_outliers(outl: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The k largest |x| per model, for models where some are massive (empty when none is: the report then leaves
    the table out)."""
    if "massive" in outl:
        outl = outl[outl["model"].isin(outl.loc[outl["massive"].astype(bool), "model"])]
    return _shown_tokens(outl.sort_values("value", key=abs, ascending=False).groupby("model", sort=False).head(k),
                         "token")


def _models(t: dict, colors: Colors) -> dict:
    cards = t.get("cards", pd.DataFrame(columns=["model"]))
    return _section("models", "Models", "What was measured: one row per model card.",
                    {"cards": "no model cards"}, t, tables=[_table(cards, swatches=colors)] if len(cards) else [])


def _variance(t: dict, colors: Colors) -> dict:
    growth = t.get("growth")
    return _section("variance", "Variance growth with depth",
                    "Variance of the residual stream at each depth (pooled over tokens × dimensions), every "
                    "model overlaid. In Post-LN blocks (post-ln, the first blocks of mix-ln, MiniLM) the carried "
                    "stream is the normalized one, so its variance stays near the norm gain's scale by design. "
                    "Growth ratio: last depth / depth 1.",
                    {"stream": COLLECT + " with the residual collector"}, t,
                    figs=[F.stream_growth(t, colors), F.growth_bars(t, colors)],
                    tables=[_table(growth, "Growth summary", swatches=colors)] if growth is not None
                    and not growth.empty else [])


def _massive(t: dict, colors: Colors) -> dict:
    outl, abl, mdims = t.get("outliers"), t.get("ablation"), t.get("massive_dims")
    top = _top_outliers(outl) if outl is not None else None
    return _section("massive", "Massive activations",
                    "Per layer, the largest |x| and the median |x| of the hidden state (Sun et al. 2024).",
                    {"massive": COLLECT + " with the massive-activation collector",
                     "ablation": "mean- vs zero-ablation; " + MAIN}, t,
                    figs=[F.massive_census(t, colors), F.massive_heatmaps(t, colors)],
                    tables=[x for x in (
                        _table(top, "Largest activations (models with massive ones; 10 each)",
                               swatches=colors) if top is not None and not top.empty else None,
                        _table(mdims.sort_values("count", ascending=False).groupby("model").head(8),
                               "Dimensions that carry massive activations (most frequent first)", swatches=colors)
                        if mdims is not None and not mdims.empty else None,
                        _table(abl, "Loss on held text with massive activations ablated (nats)", swatches=colors)
                        if abl is not None and not abl.empty else None) if x])


def _precision(t: dict, colors: Colors) -> dict:
    from interp.precision.report import section
    return section(t, colors, _section, _table)


def _gradients(t: dict, colors: Colors) -> dict:
    return _section("gradients", "Gradient norms per layer",
                    "Norm of the loss gradient per block: next-token CE for causal LMs; for encoders and "
                    "masked-diffusion models (marked '· probe') a fixed random probe of the mean-pooled output "
                    "(interp.collectors.objective), whose scale says nothing about CE's.",
                    {"gradients": COLLECT + " with the gradient collector"}, t,
                    figs=[F.gradient_profiles(t, colors)])


def _dynamics(t: dict, colors: Colors) -> dict:
    from interp.report.dynamics import section
    return section(t, colors, _section, _table)


def _depth(t: dict, colors: Colors) -> dict:
    return _section("depth", "Layer effectiveness",
                    "Angular distance between residual streams and the loss when a block is skipped (per-model "
                    "figures: each zoo strategy's seed 0).",
                    {"angular": "angular distances", "skip": "layer-skip losses"}, t,
                    figs=[F.angular_heatmap(t, colors), F.skip_bars(t, colors)])


def _norm_scales(t: dict, colors: Colors) -> dict:
    return _section("norm-scales", "Norm scales", "How much each norm divides by, per layer.",
                    {"norm_scales": COLLECT + " with the norm-scale collector"}, t, figs=[F.norm_scales(t, colors)])


def _dla(t: dict, colors: Colors) -> dict:
    example = t.get("dla_example")
    return _section("dla", "Direct logit attribution",
                    "DLA through the frozen final-norm scale against the true direct effect (path ablation).",
                    {"dla_error": MAIN, "dla_example": MAIN}, t,
                    figs=[F.dla_error_bars(t, colors), F.dla_example(t, colors)],
                    tables=[_table(_shown_tokens(example[["model", "prompt", "target"]].drop_duplicates().head(5),
                                                 "target"),
                                   "DLA example input", swatches=colors)]
                    if example is not None and "prompt" in example else [])


def _lens(t: dict, colors: Colors) -> dict:
    return _section("lens", "Logit lens", "Each intermediate stream read through the final norm (its statistics "
                    "recomputed) and the unembedding: the probability of the target per layer, mean over positions; "
                    "in the main job the target at each position is the model's own final top-1 prediction.",
                    {"logit_lens": MAIN}, t, figs=[F.logit_lens(t, colors)])


def _modern_norms(t: dict, colors: Colors) -> dict:
    from interp.report import modern
    return modern.section(t, colors, _section, _table)


def _mdlm(t: dict, colors: Colors) -> dict:
    from interp.report.mdlm import mdlm_section
    return mdlm_section(t, colors)


def _training(t: dict, colors: Colors) -> dict:
    return _section("training", "Training and learning-rate stability", "",
                    {"training": "training logs; the main job reads those of data/zoo: interp report --default",
                     "sweep": "LR sweep; the main job reads data/sweep: interp report --default"}, t,
                    figs=[F.training_curves(t, colors), F.lr_sweep(t, colors)])


def _surgery(t: dict, colors: Colors) -> dict:
    lr, eq = t.get("ln_removal"), t.get("equivalence")
    return _section("surgery", "LN removal and equivalence", "",
                    {"ln_removal": MAIN, "equivalence": MAIN}, t,
                    figs=[F.ln_removal(t, colors)],
                    tables=[x for x in (_table(lr, "LN removal (CE in nats)") if lr is not None and not lr.empty
                                        else None,
                                        _table(eq, "Pre-LN → RMSNorm / CRMSNorm (float64)") if eq is not None
                                        and not eq.empty else None) if x])


# page order (the claims come first and the run log last: render.py adds them)
BUILDERS: dict[str, Callable[[dict, Colors], dict]] = {
    "models": _models, "variance": _variance, "massive": _massive, "precision": _precision, "gradients": _gradients,
    "dynamics": _dynamics, "depth": _depth, "norm-scales": _norm_scales, "dla": _dla, "lens": _lens,
    "modern-norms": _modern_norms, "mdlm": _mdlm, "training": _training, "surgery": _surgery}


def build(t: dict, colors: Colors, names: list[str]) -> list[dict]:
    """The sections `names` (keys of BUILDERS), in that order. Call it inside `figures.deferred_templates()`."""
    return [BUILDERS[n](t, colors) for n in names]


def build_elsewhere(t: dict, colors: Colors, names: list[str]) -> list[dict]:
    """`build` for another process (a pool's worker): its own deferred_templates, as render_html's."""
    with F.deferred_templates():
        return build(t, colors, names)
