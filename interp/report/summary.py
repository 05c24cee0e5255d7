"""Analysis the report needs that the collectors may not have done: the variance-growth summary."""
from __future__ import annotations

import numpy as np
import pandas as pd


def growth_summary(stream: pd.DataFrame) -> pd.DataFrame:
    """Per model, the growth figures of `interp.analysis.growth.growth_figures` (documented once in
    docs/results.md) on the stream's variance at depths 1..L, plus var_first = var(1) and var_last = var(L).

    Depth 0 (the embeddings) is left out: embeddings are often tiny at init and would make every ratio huge,
    and the Curse-of-Depth and Peri-LN papers compare layer outputs."""
    from interp.analysis.growth import growth_figures
    rows = []
    for model, g in stream.groupby("model", sort=False):
        g = g[g["depth"] >= 1].sort_values("depth")
        v = g["variance"].to_numpy(dtype=float)
        try:
            fig = growth_figures(v)
        except ValueError:  # fewer than 3 block outputs, or a zero variance: no law to fit
            fig = dict(ratio_last_first=np.nan, growth_factor=np.nan, slope_log_var=np.nan, shape=np.nan)
        rows.append(dict(model=model, **fig, var_first=float(v[0]) if len(v) else np.nan,
                         var_last=float(v[-1]) if len(v) else np.nan))
    return pd.DataFrame(rows)


def complete(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """`tables` plus what can be derived from them (the growth summary from the stream table)."""
    t = dict(tables)
    if (t.get("growth") is None or t["growth"].empty) and t.get("stream") is not None and not t["stream"].empty:
        t["growth"] = growth_summary(t["stream"])
    return t
