"""Gather what a report shows: `Results` (one per model, from `interp.collect`) and saved results directories
→ the canonical tables of `interp.report.tables`, one DataFrame per table with a `model` column.

Adapters for each producer's table live here, so figures and claims read one schema. A producer's table
whose name is already canonical and whose columns match passes through unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from interp.report.tables import TABLES, check_table

# producer table name -> adapter(df, card) -> {canonical name: DataFrame}; filled in by `adapter` below.
ADAPTERS: dict[str, Callable[[pd.DataFrame, Any], dict[str, pd.DataFrame]]] = {}


def adapter(name: str):
    """Register an adapter for producer table `name`."""
    def deco(fn):
        ADAPTERS[name] = fn
        return fn
    return deco


def card_row(card: Any) -> dict[str, Any]:
    d = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    d = {("model" if k == "name" else k): v for k, v in d.items() if k != "extra"}
    return d


def _with_model(df: pd.DataFrame, name: str) -> pd.DataFrame:
    df = df.copy()
    if "model" not in df.columns:
        df.insert(0, "model", name)
    return df


def tables_from_results(results: Iterable[Any]) -> dict[str, pd.DataFrame]:
    """Canonical tables from `Results` objects (anything with `.card` and `.tables`)."""
    parts: dict[str, list[pd.DataFrame]] = {}
    cards = []
    for r in results:
        cards.append(card_row(r.card))
        for name, df in r.tables.items():
            if name in ADAPTERS:
                out = ADAPTERS[name](df, r.card)
            elif name in TABLES:
                out = {name: df}
            else:
                continue  # a table the report does not show
            for cname, cdf in out.items():
                if cdf is not None and not cdf.empty:
                    parts.setdefault(cname, []).append(_with_model(cdf, r.card.name))
    tables = {k: check_table(k, pd.concat(v, ignore_index=True)) for k, v in parts.items()}
    if cards:
        tables["cards"] = pd.DataFrame(cards).drop_duplicates("model", keep="last")
    return tables


def merge_tables(*many: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Concatenate canonical tables from several sources (later rows for the same model win for cards)."""
    out: dict[str, list[pd.DataFrame]] = {}
    for t in many:
        for k, v in t.items():
            if v is not None and not v.empty:
                out.setdefault(k, []).append(v)
    merged = {k: pd.concat(v, ignore_index=True) for k, v in out.items()}
    if "cards" in merged:
        merged["cards"] = merged["cards"].drop_duplicates("model", keep="last").reset_index(drop=True)
    return merged


def load_dirs(paths: Iterable[str | Path]) -> list[Any]:
    """Load every saved `Results` under each path (the path itself, or its immediate subdirectories)."""
    from interp.collect.results import INDEX, Results
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"results directory {p} does not exist; run `interp collect` first")
        if (p / INDEX).is_file():
            out.append(Results.load(p))
            continue
        subs = sorted(d for d in p.iterdir() if (d / INDEX).is_file())
        if not subs:
            raise FileNotFoundError(f"{p} holds no saved results ({INDEX} in it or in a subdirectory)")
        out += [Results.load(d) for d in subs]
    return out
