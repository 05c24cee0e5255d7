"""Analysis the report needs that the collectors may not have done: the variance-growth summary."""
from __future__ import annotations

import numpy as np
import pandas as pd


def growth_summary(stream: pd.DataFrame) -> pd.DataFrame:
    """Per model: least-squares slope of ln(variance) vs depth, and variance(last depth) / variance(depth 1).

    Depth 1 (after block 0), not depth 0 (the embeddings), is the reference: embeddings are often tiny at init
    and would make every ratio huge (the Curse-of-Depth and Peri-LN papers compare layer outputs).
    """
    rows = []
    for model, g in stream.groupby("model", sort=False):
        g = g.sort_values("depth")
        v = g["variance"].to_numpy(dtype=float)
        d = g["depth"].to_numpy(dtype=float)
        ok = np.isfinite(v) & (v > 0)
        slope = float(np.polyfit(d[ok], np.log(v[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")
        first = v[1] if len(v) > 1 else v[0]
        rows.append(dict(model=model, slope_log_var=slope, ratio_last_first=float(v[-1] / first),
                         var_first=float(first), var_last=float(v[-1])))
    return pd.DataFrame(rows)


def complete(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """`tables` plus what can be derived from them (the growth summary from the stream table)."""
    t = dict(tables)
    if (t.get("growth") is None or t["growth"].empty) and t.get("stream") is not None and not t["stream"].empty:
        t["growth"] = growth_summary(t["stream"])
    return t
