"""Turn canonical tables into one self-contained HTML page: jinja2 (autoescape on) + plotly.js inlined once."""
from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import plotly.offline

from interp.report import claims as _claims
from interp.report import figures as F
from interp.report import sections
from interp.report.colors import color_for
from interp.report.sections import _section, _table  # also imported from here by the section modules
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


def _claims_section(claims: pd.DataFrame, t: dict) -> dict:
    from interp.report.claims.display import display_table, seeds_text, verdict_counts
    counts = ", ".join(f"{v} {k}" for k, v in verdict_counts(claims).items())
    seeds = seeds_text(t.get("cards"))
    return _section("claims", "Claims of the seed papers, checked here",
                    _claims.INTRO + f" Seeds per zoo strategy in this run: {seeds}. This run: {counts}.", {},
                    t, tables=[_table(display_table(claims), verdict_col="verdict")])


# the sections a pool's worker builds while this process builds the others: about half of the build time
# (figure construction dominates; measured on the main job's tables)
ELSEWHERE = ("precision", "dynamics", "mdlm", "norm-scales")


def render_html(tables: dict[str, pd.DataFrame], sources: list[str], title: str = "interp: normalization report",
                run_log: list[str] | None = None, claims: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
                pool: Executor | None = None) -> str:
    """The report's HTML for `tables` (canonical names, see interp.report.tables); `claims`: the claims table
    when already evaluated on these tables (interp.report.claims.evaluate), or a function that returns it (called
    once the other sections are rendered: the main job evaluates the claims on a worker meanwhile). With `pool`
    (a process pool), the sections in ELSEWHERE are built on one of its workers meanwhile: the same page."""
    with F.deferred_templates():  # the same figures without plotly validating a template for each (figures.py)
        return _render_html(tables, sources, title, run_log, claims, pool)


def _render_html(tables: dict[str, pd.DataFrame], sources: list[str], title: str, run_log: list[str] | None,
                 claims: pd.DataFrame | None, pool: Executor | None) -> str:
    from interp.report.shareable import public_frame, shareable
    tables, sources, run_log = shareable(tables, sources, run_log)  # no path of this machine in the file
    pending = claims if callable(claims) else None
    claims = None if claims is None or pending is not None else public_frame(claims)
    t = complete(tables)
    colors = model_colors(t)
    names = list(sections.BUILDERS)
    there = [n for n in names if n in ELSEWHERE] if pool is not None else []
    elsewhere = pool.submit(sections.build_elsewhere, t, colors, there) if there else None
    here = [n for n in names if n not in there]
    built = dict(zip(here, sections.build(t, colors, here)))
    if elsewhere is not None:
        built.update(zip(there, elsewhere.result()))
    S = [built[n] for n in names]
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
