"""Turn canonical tables into one self-contained HTML page: jinja2 (autoescape on) + plotly.js inlined once."""
from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
import math
import re
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from interp.report import claims as _claims
from interp.report import figures as F
from interp.report.colors import color_for
from interp.report.summary import complete

_TEMPLATES = Path(__file__).parent / "templates"


def _fmt(v: object) -> str:
    """A table cell as text: whole numbers in full (also when a missing cell made their column float: 4 significant
    digits would print 134,515,008 as 1.345e+08), other floats to 4 significant digits, NaN as —."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "—"
        return f"{int(v):,}" if math.isfinite(v) and v == int(v) and 1e4 <= abs(v) < 1e15 else f"{v:.4g}"
    return "" if v is None else str(v)


def _verdict_class(v: object) -> str:
    return "v-" + re.sub(r"[^a-z]+", "-", str(v).lower()).strip("-")


def _safe_color(c: object) -> str:
    return c if isinstance(c, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", c) else "#999999"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(fmt=_fmt, verdict_class=_verdict_class, safe_color=_safe_color)
    return env


def model_colors(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """model → colour: zoo models take their strategy's colour, real models their own."""
    cards = tables.get("cards")
    out: dict[str, str] = {}
    if cards is not None:
        for _, r in cards.iterrows():
            key = r.get("strategy") if r.get("family") == "zoo" and r.get("strategy") else r["model"]
            out[r["model"]] = color_for(str(key))
    return out


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


def _claims_section(claims: pd.DataFrame, t: dict) -> dict:
    from interp.report.claims.display import display_table, seeds_text, verdict_counts
    counts = ", ".join(f"{v} {k}" for k, v in verdict_counts(claims).items())
    seeds = seeds_text(t.get("cards"))
    return _section("claims", "Claims of the seed papers, checked here",
                    _claims.INTRO + f" Seeds per zoo strategy in this run: {seeds}. This run: {counts}.", {},
                    t, tables=[_table(display_table(claims), verdict_col="verdict")])


def render_html(tables: dict[str, pd.DataFrame], sources: list[str], title: str = "interp: normalization report",
                run_log: list[str] | None = None, claims: pd.DataFrame | Callable[[], pd.DataFrame] | None = None) -> str:
    """The report's HTML for `tables` (canonical names, see interp.report.tables); `claims`: the claims table
    when already evaluated on these tables (interp.report.claims.evaluate), or a function that returns it (called
    once the other sections are rendered: the main job evaluates the claims on a worker meanwhile)."""
    with F.deferred_templates():  # the same figures without plotly validating a template for each (figures.py)
        return _render_html(tables, sources, title, run_log, claims)


def _render_html(tables: dict[str, pd.DataFrame], sources: list[str], title: str, run_log: list[str] | None,
                 claims: pd.DataFrame | None) -> str:
    from interp.report.shareable import public_frame, shareable
    tables, sources, run_log = shareable(tables, sources, run_log)  # no path of this machine in the file
    pending = claims if callable(claims) else None
    claims = None if claims is None or pending is not None else public_frame(claims)
    t = complete(tables)
    colors = model_colors(t)
    cards = t.get("cards", pd.DataFrame(columns=["model"]))
    collect = "run interp collect"
    main = "the main job measures it: interp report --default"  # interp report <dirs> cannot read it from folders
    S = []
    S.append(_section("models", "Models", "What was measured: one row per model card.",
                      {"cards": "no model cards"}, t, tables=[_table(cards, swatches=colors)] if len(cards) else []))
    growth = t.get("growth")
    S.append(_section("variance", "Variance growth with depth",
                      "Variance of the residual stream at each depth (pooled over tokens × dimensions), every "
                      "model overlaid. In Post-LN blocks (post-ln, the first blocks of mix-ln, MiniLM) the carried "
                      "stream is the normalized one, so its variance stays near the norm gain's scale by design. "
                      "Growth ratio: last depth / depth 1.",
                      {"stream": collect + " with the residual collector"}, t,
                      figs=[F.stream_growth(t, colors), F.growth_bars(t, colors)],
                      tables=[_table(growth, "Growth summary", swatches=colors)] if growth is not None
                      and not growth.empty else []))
    outl, abl, mdims = t.get("outliers"), t.get("ablation"), t.get("massive_dims")
    top = _top_outliers(outl) if outl is not None else None
    S.append(_section("massive", "Massive activations",
                      "Per layer, the largest |x| and the median |x| of the hidden state (Sun et al. 2024).",
                      {"massive": collect + " with the massive-activation collector",
                       "ablation": "mean- vs zero-ablation; " + main}, t,
                      figs=[F.massive_census(t, colors), F.massive_heatmaps(t, colors)],
                      tables=[x for x in (
                          _table(top, "Largest activations (models with massive ones; 10 each)",
                                 swatches=colors) if top is not None and not top.empty else None,
                          _table(mdims.sort_values("count", ascending=False).groupby("model").head(8),
                                 "Dimensions that carry massive activations (most frequent first)", swatches=colors)
                          if mdims is not None and not mdims.empty else None,
                          _table(abl, "Loss on held text with massive activations ablated (nats)", swatches=colors)
                          if abl is not None and not abl.empty else None) if x]))
    from interp.precision.report import section as precision_section
    S.append(precision_section(t, colors, _section, _table))
    S.append(_section("gradients", "Gradient norms per layer",
                      "Norm of the loss gradient per block: next-token CE for causal LMs; for encoders and "
                      "masked-diffusion models (marked '· probe') a fixed random probe of the mean-pooled output "
                      "(interp.collectors.objective), whose scale says nothing about CE's.",
                      {"gradients": collect + " with the gradient collector"}, t,
                      figs=[F.gradient_profiles(t, colors)]))
    from interp.report.dynamics import section as dynamics_section
    S.append(dynamics_section(t, colors, _section, _table))
    S.append(_section("depth", "Layer effectiveness",
                      "Angular distance between residual streams and the loss when a block is skipped (per-model "
                      "figures: each zoo strategy's seed 0).",
                      {"angular": "angular distances", "skip": "layer-skip losses"}, t,
                      figs=[F.angular_heatmap(t, colors), F.skip_bars(t, colors)]))
    S.append(_section("norm-scales", "Norm scales", "How much each norm divides by, per layer.",
                      {"norm_scales": collect + " with the norm-scale collector"}, t, figs=[F.norm_scales(t, colors)]))
    S.append(_section("dla", "Direct logit attribution",
                      "DLA through the frozen final-norm scale against the true direct effect (path ablation).",
                      {"dla_error": main, "dla_example": main}, t,
                      figs=[F.dla_error_bars(t, colors), F.dla_example(t, colors)],
                      tables=[_table(_shown_tokens(t["dla_example"][["model", "prompt", "target"]].drop_duplicates().head(5),
                                                    "target"),
                                     "DLA example input", swatches=colors)]
                      if t.get("dla_example") is not None and "prompt" in t["dla_example"] else []))
    S.append(_section("lens", "Logit lens", "Each intermediate stream read through the final norm (its statistics "
                      "recomputed) and the unembedding: the probability of the target per layer, mean over positions; "
                      "in the main job the target at each position is the model's own final top-1 prediction.",
                      {"logit_lens": main}, t, figs=[F.logit_lens(t, colors)]))
    from interp.report import modern
    S.append(modern.section(t, colors, _section, _table))
    from interp.report.mdlm import mdlm_section
    S.append(mdlm_section(t, colors))
    S.append(_section("training", "Training and learning-rate stability", "",
                      {"training": "training logs; the main job reads those of data/zoo: interp report --default",
                       "sweep": "LR sweep; the main job reads data/sweep: interp report --default"}, t,
                      figs=[F.training_curves(t, colors), F.lr_sweep(t, colors)]))
    lr = t.get("ln_removal")
    eq = t.get("equivalence")
    S.append(_section("surgery", "LN removal and equivalence", "",
                      {"ln_removal": main, "equivalence": main}, t,
                      figs=[F.ln_removal(t, colors)],
                      tables=[x for x in (_table(lr, "LN removal (CE in nats)") if lr is not None and not lr.empty
                                          else None,
                                          _table(eq, "Pre-LN → RMSNorm / CRMSNorm (float64)") if eq is not None
                                          and not eq.empty else None) if x]))
    if pending is not None:
        claims = public_frame(pending())
    S.insert(0, _claims_section(_claims.evaluate(t) if claims is None else claims, t))  # first on the page
    if run_log:
        S.append(_section("run", "How this report was made", "The main job's log, step by step.", {}, t,
                          notes=run_log))
    import interp
    return _env().get_template("report.html.j2").render(
        title=title, sections=S, sources=sources, version=interp.__version__,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        plotlyjs=plotly.offline.get_plotlyjs())


render = render_html  # its name before 0.2 (interp.report.render is this module)
