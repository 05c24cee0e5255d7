"""The comparison report: one self-contained HTML file (plotly.js inlined, no network) comparing models on
every measurement, with the seed papers' claims checked against the numbers.

    interp.report.build([results_a, results_b], "report/index.html")   # Results objects or saved dirs

The public names load on first use (PEP 562), so `interp.report.marker` and the CLI's checks before any work
do not import pandas, the claims or the models.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "render_html": ("interp.report.render", "render_html"),
    "model_colors": ("interp.report.render", "model_colors"),
    "evaluate": ("interp.report.claims", "evaluate"),
    "CLAIMS": ("interp.report.claims", "CLAIMS"),
    "THRESHOLDS": ("interp.report.claims", "THRESHOLDS"),
    "TABLES": ("interp.report.tables", "TABLES"),
    "color_for": ("interp.report.colors", "color_for"),
    "tables_from_results": ("interp.report.inputs", "tables_from_results"),
    "merge_tables": ("interp.report.inputs", "merge_tables"),
    "load_dirs": ("interp.report.inputs", "load_dirs"),
    # the name before 0.2; the one writer is interp.outputs.atomic_write_text
    "write_atomic": ("interp.outputs", "atomic_write_text"),
}

if TYPE_CHECKING:
    import pandas as pd

    from interp.outputs import atomic_write_text as write_atomic  # noqa: F401
    from interp.report.claims import CLAIMS, THRESHOLDS, evaluate  # noqa: F401
    from interp.report.colors import color_for  # noqa: F401
    from interp.report.inputs import load_dirs, merge_tables, tables_from_results  # noqa: F401
    from interp.report.render import model_colors, render_html  # noqa: F401
    from interp.report.tables import TABLES  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'interp.report' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def build(results: Any, path: str | Path, extra: dict[str, pd.DataFrame] | None = None,
          title: str = "interp: normalization report", force: bool = False, progress: bool = False) -> Path:
    """Write the report for `results` to `path`.

    results: a `Results`, a saved results directory, or a list of either; `extra`: further canonical tables
    (training logs, LR sweep, LN removal ...; see interp.report.TABLES), each checked before any work: a name not
    in TABLES or a table without one of its required columns raises ValueError naming it. Raises ValueError on no
    models.
    An existing `path` is replaced only when it is an earlier interp report and `force` is set. `progress`: a bar
    on stderr while the directories load (when that takes over half a second), then a line once the tables are built.
    """
    from interp.outputs import atomic_write_text
    from interp.report.marker import check_report_target
    check_report_target(path, force)  # before any work
    from interp.report.tables import check_table
    for name, df in (extra or {}).items():  # a misspelt name or a missing column: one line now, not a KeyError late
        if not hasattr(df, "columns"):
            raise TypeError(f"extra[{name!r}] is a {type(df).__name__}, not a DataFrame of report table {name!r}")
        check_table(name, df)
    from interp.report import load_dirs, merge_tables, render_html, tables_from_results  # this module's names
    items = results if isinstance(results, (list, tuple)) else [results]
    dirs = [r for r in items if isinstance(r, (str, Path))]
    objs = [r for r in items if not isinstance(r, (str, Path))] + load_dirs(dirs, progress=progress)
    tables = merge_tables(tables_from_results(objs), extra or {})
    if "cards" not in tables or tables["cards"].empty:
        raise ValueError("no models to report on: pass at least one Results (or a saved results directory)")
    if progress:  # after every check of the input: a bad input stays one line on stderr
        print(f"tables of {len(tables['cards'])} model(s) built; now the claims and figures", file=sys.stderr,
              flush=True)
    return atomic_write_text(path, render_html(tables, sources=[str(d) for d in dirs] or
                                     [f"{len(objs)} in-memory result(s)"], title=title))


__all__ = ["build", "render_html", "model_colors", "evaluate", "CLAIMS", "THRESHOLDS", "TABLES", "color_for",
           "tables_from_results", "merge_tables", "load_dirs"]
