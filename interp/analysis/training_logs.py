"""Training-dynamics claims read from the training logs shipped with each zoo model (steps.parquet,
layers.parquet, columns documented in `interp.train.trainer`); training itself is not re-run.

  grad_spike_rate     steps whose global gradient norm (before clipping) exceeds SPIKE_K × the median of the
                      previous SPIKE_WINDOW steps, per 1000 steps (steps before the window fills are not
                      counted). Peri-LN §4 counts such spikes; it fixes no k, so k = 3 and a 50-step window here.
  bstat_fluctuation   median over the batch-statistic norms of each norm's median, over the steps after the
                      first 10 % of the run (the LR warm-up), of ‖ψ²_t − ψ²_t−1‖ / ‖ψ²_t−1‖, ψ² the per-channel batch second
                      moment (layers.parquet metric bstat_x2_rel_change): the fluctuation PowerNorm §3 measures.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need
from interp.analysis.units import estimate

SPIKE_K, SPIKE_WINDOW, SKIP_FRACTION = 3.0, 50, 0.10


def spike_count(grad_norm: np.ndarray, k: float = SPIKE_K, window: int = SPIKE_WINDOW) -> tuple[int, int]:
    """(spikes, steps counted): steps i ≥ window with g_i > k · median(g_{i−window} .. g_{i−1})."""
    g = np.asarray(grad_norm, dtype=float)
    if len(g) <= window:
        return 0, 0
    win = np.lib.stride_tricks.sliding_window_view(g[:-1], window)  # row r: g[r .. r+window−1], precedes g[r+window]
    med = np.median(win, axis=1)
    later = g[window:]
    return int((later > k * med).sum()), len(later)


def read_logs(zoo_dir: str | Path, models: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Per zoo model directory: log_spikes (model, steps, spikes) and log_bstat (model, site, fluctuation)."""
    spikes, bstat = [], []
    for d in sorted(Path(zoo_dir).glob("*/steps.parquet")):
        name = d.parent.name
        if models is not None and name not in models:
            continue
        s = pd.read_parquet(d, columns=["step", "grad_norm"]).sort_values("step")
        n_sp, n = spike_count(s["grad_norm"].to_numpy())
        spikes.append({"model": name, "steps": n, "spikes": n_sp})
        lay = d.parent / "layers.parquet"
        if lay.is_file():
            import pyarrow.parquet as pq
            rows = pq.read_table(lay, filters=[("metric", "=", "bstat_x2_rel_change")]).to_pandas()
            if not rows.empty:
                start = SKIP_FRACTION * (s["step"].max() + 1)
                rows = rows[(rows["step"] >= start) & np.isfinite(rows["value"])]
                for site, g in rows.groupby("site"):
                    bstat.append({"model": name, "site": site, "fluctuation": float(g["value"].median())})
    out = {}
    if spikes:
        out["log_spikes"] = pd.DataFrame(spikes)
    if bstat:
        out["log_bstat"] = pd.DataFrame(bstat)
    return out


@metric("grad_spike_rate", f"steps with gradient norm > {SPIKE_K:g}× the median of the previous {SPIKE_WINDOW} "
        "steps, per 1000 steps (training log)", "Peri-LN §4 (gradient spikes)", "per 1000 steps")
def grad_spike_rate(t, subject: Subject, ref: Subject | None = None):
    """Gradient-spike rate from the training logs; with a reference, the difference of rates."""
    rows = need(t, "log_spikes", subject.models + (ref.models if ref else ()), "training logs (steps.parquet)")
    rate = {r.model: 1000.0 * r.spikes / r.steps if r.steps else math.nan for r in rows.itertuples()}
    return estimate(lambda m, idx: rate.get(m, math.nan), subject, ref)


@metric("bstat_fluctuation", "median step-to-step relative change ‖ψ²_t − ψ²_t−1‖/‖ψ²_t−1‖ of the batch "
        "second moment, over the batch-statistic norms, after the LR warm-up (training log)",
        "PowerNorm §3 (Fig. 2: batch statistics fluctuate in NLP)")
def bstat_fluctuation(t, subject: Subject, ref: Subject | None = None):
    """Batch-statistic fluctuation of a PowerNorm / Unified Norm model from its training telemetry."""
    rows = need(t, "log_bstat", subject.models + (ref.models if ref else ()),
                "batch-statistic telemetry (layers.parquet bstat_x2_rel_change)")
    per = rows.groupby("model")["fluctuation"].median()
    return estimate(lambda m, idx: float(per.get(m, math.nan)), subject, ref)
