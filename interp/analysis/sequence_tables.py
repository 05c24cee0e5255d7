"""Read the per-sequence tables (seq_stream, seq_loss; see `interp.analysis.sequences`) as arrays, by model.

Sequences are the held-out sequences every zoo model saw, in the same order (slot numbers), so index i means
the same text for every zoo model: paired comparisons resample the same indices on both sides.
"""
from __future__ import annotations

import weakref

import numpy as np
import pandas as pd

from interp.analysis.intervals import NotTestable
from interp.analysis.sequences import STREAM_KEYS

_CACHE: dict[tuple, tuple[weakref.ref, object]] = {}


def _key(df: pd.DataFrame, model: str) -> tuple:
    return (id(df), model)


def _cached(key: tuple, df: pd.DataFrame):
    """The cached arrays of `key` if they were built from this very DataFrame (an id can be reused once a
    frame is freed), else None."""
    hit = _CACHE.get(key)
    return hit[1] if hit is not None and hit[0]() is df else None


def _store(key: tuple, df: pd.DataFrame, value):
    for k in [k for k, (ref, _) in _CACHE.items() if ref() is None]:  # drop entries of freed frames
        del _CACHE[k]
    _CACHE[key] = (weakref.ref(df), value)
    return value


def stream_arrays(t: dict[str, pd.DataFrame], model: str) -> dict[str, np.ndarray]:
    """{key: [sequences, depths] array} of model's seq_stream rows (keys: STREAM_KEYS), sequences sorted."""
    df = t.get("seq_stream")
    if df is None or df.empty:
        raise NotTestable("no per-sequence stream statistics in this run (the seq_stats collector)")
    k = _key(df, model)
    hit = _cached(k, df)
    if hit is not None:
        return hit
    rows = df[df["model"] == model]
    if rows.empty:
        raise NotTestable(f"no per-sequence stream statistics for {model}")
    rows = rows.sort_values(["seq", "depth"])
    S, D = rows["seq"].nunique(), rows["depth"].nunique()
    out = {c: rows[c].to_numpy(dtype=float).reshape(S, D) for c in STREAM_KEYS}
    out["seq"] = rows["seq"].to_numpy().reshape(S, D)[:, 0]
    return _store(k, df, out)


def loss_arrays(t: dict[str, pd.DataFrame], model: str) -> tuple[np.ndarray, np.ndarray]:
    """(summed CE, predicted tokens) per held-out sequence of `model`, sequences sorted."""
    df = t.get("seq_loss")
    if df is None or df.empty:
        raise NotTestable("no per-sequence losses in this run (the seq_stats collector on a causal LM)")
    k = ("loss", *_key(df, model))
    hit = _cached(k, df)
    if hit is not None:
        return hit
    rows = df[df["model"] == model].sort_values("seq")
    if rows.empty:
        raise NotTestable(f"no per-sequence loss for {model}")
    return _store(k, df, (rows["loss_sum"].to_numpy(dtype=float), rows["n_pred"].to_numpy(dtype=float)))


def n_shared(t: dict[str, pd.DataFrame], models, table: str = "seq_stream") -> int:
    """How many sequences every one of `models` has in `table` (0 when they differ: no paired resampling)."""
    df = t.get(table)
    if df is None or df.empty:
        return 0
    sets = [set(df.loc[df["model"] == m, "seq"]) for m in models]
    if not sets or any(s != sets[0] for s in sets):
        return 0
    return len(sets[0])
