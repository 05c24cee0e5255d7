"""The comparison report: one self-contained HTML file (plotly.js inlined, no network) comparing models on
every measurement, with the seed papers' claims checked against the numbers.

    interp.report.build([results_a, results_b], "report/index.html")   # Results objects or saved dirs
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from interp.outputs import atomic_write_text
from interp.report.claims import CLAIMS, THRESHOLDS, evaluate
from interp.report.colors import color_for
from interp.report.inputs import load_dirs, merge_tables, tables_from_results
from interp.report.render import model_colors, render_html
from interp.report.tables import TABLES

write_atomic = atomic_write_text  # the name before 0.2; the one writer is interp.outputs.atomic_write_text


def build(results: Any, path: str | Path, extra: dict[str, pd.DataFrame] | None = None,
          title: str = "interp: normalization report", force: bool = False) -> Path:
    """Write the report for `results` to `path`.

    results: a `Results`, a saved results directory, or a list of either; `extra`: further canonical tables
    (training logs, LR sweep, LN removal ...; see interp.report.TABLES). Raises ValueError on no models.
    An existing `path` is replaced only when it is an earlier interp report and `force` is set.
    """
    from interp.report.marker import check_report_target
    check_report_target(path, force)  # before any work
    items = results if isinstance(results, (list, tuple)) else [results]
    dirs = [r for r in items if isinstance(r, (str, Path))]
    objs = [r for r in items if not isinstance(r, (str, Path))] + load_dirs(dirs)
    tables = merge_tables(tables_from_results(objs), extra or {})
    if "cards" not in tables or tables["cards"].empty:
        raise ValueError("no models to report on: pass at least one Results (or a saved results directory)")
    return atomic_write_text(path, render_html(tables, sources=[str(d) for d in dirs] or
                                     [f"{len(objs)} in-memory result(s)"], title=title))


__all__ = ["build", "render_html", "model_colors", "evaluate", "CLAIMS", "THRESHOLDS", "TABLES", "color_for",
           "tables_from_results", "merge_tables", "load_dirs"]
