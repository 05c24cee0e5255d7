"""Training-dynamics claims read from the training logs shipped with each zoo model (steps.parquet,
layers.parquet, columns documented in `interp.train.trainer`); training itself is not re-run.

  grad_spike_rate     steps whose global gradient norm (before clipping) exceeds SPIKE_K × the median of the
                      previous SPIKE_WINDOW steps, per 1000 steps (steps before the window fills are not
                      counted). Peri-LN §4 counts such spikes; it fixes no k, so k = 3 and a 50-step window here.
  bstat_fluctuation   median over the batch-statistic norms of each norm's median, over the steps after the
                      first 10 % of the run (the LR warm-up), of ‖ψ²_t − ψ²_t−1‖ / ‖ψ²_t−1‖, ψ² the per-channel batch second
                      moment (layers.parquet metric bstat_x2_rel_change): the fluctuation PowerNorm §3 measures.
  rstat_steadiness    median over the batch-statistic norms of median_t(rstat_x2_rel_change) / median_t(
                      bstat_x2_rel_change), the same steps for both: how much the norm's running second moment
                      moves per step (PowerNorm's running ψ², Unified Norm's running σ²) relative to how much the
                      batch statistic moves. The steps are those after the first 10 % of the run and after the
                      norm's statistics warm-up and first window (steady_start), where the running statistic follows
                      its steady rule. PowerNorm §4 divides by it because it is steadier.
  dstat_steadiness    the same with dstat_x2_rel_change, the second moment the training forward divided by (Unified
                      Norm's window-smoothed statistic; for PowerNorm the running ψ² of the previous step).
Both ratios need the telemetry logged since rstat / dstat existed; a model trained before has none, and is left
out of the subject (said so), or the metric is not testable when no model has it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from interp.analysis.intervals import NotTestable
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


def steady_start(config: dict, n_steps: int) -> int:
    """First step counted by the steadiness ratios of a zoo model with `config` (its config.json "config") trained
    `n_steps` steps: after the first SKIP_FRACTION of the run, after the norm's statistics warm-up (it divides by
    the batch statistic until then, and PowerNorm's running ψ² is a cumulative average), and after a full
    window of Unified Norm's smoothing plus one step (so the previous step's value follows the steady rule too)."""
    from interp.norms import make_norm
    norm = make_norm(config["norm"], int(config["d_model"]), **config.get("norm_kwargs", {}))
    warm = int(getattr(norm, "warmup_iters", 0)) + int(getattr(norm, "window", 0)) + 1
    return max(math.ceil(SKIP_FRACTION * n_steps), warm)


def steadiness_rows(name: str, layers: pd.DataFrame, start: int) -> list[dict]:
    """log_steadiness rows of one model: per norm site, the medians over steps ≥ start of its batch, running and
    divisor statistics' relative changes (NaN where a kind is not logged) and the step count."""
    rows = layers[(layers["step"] >= start) & np.isfinite(layers["value"])]
    out = []
    for site, g in rows.groupby("site"):
        med = g.groupby("metric")["value"].median()
        batch = med.get("bstat_x2_rel_change", math.nan)
        out.append({"model": name, "site": site, "steps": int(g["step"].nunique()), "batch": float(batch),
                    "running": float(med.get("rstat_x2_rel_change", math.nan)),
                    "divisor": float(med.get("dstat_x2_rel_change", math.nan))})
    return out


def read_logs(zoo_dir: str | Path, models: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Per zoo model directory: log_spikes (model, steps, spikes), log_bstat (model, site, fluctuation) and, where
    the running-statistic telemetry exists, log_steadiness (model, site, steps, batch, running, divisor)."""
    import json
    spikes, bstat, steady = [], [], []
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
            changes = pq.read_table(lay, filters=[("metric", "in", ["rstat_x2_rel_change", "dstat_x2_rel_change",
                                                                    "bstat_x2_rel_change"])]).to_pandas()
            cfg = d.parent / "config.json"
            if (changes["metric"] != "bstat_x2_rel_change").any() and cfg.is_file():
                start = steady_start(json.loads(cfg.read_text())["config"], int(s["step"].max()) + 1)
                steady += steadiness_rows(name, changes, start)
    out = {}
    if spikes:
        out["log_spikes"] = pd.DataFrame(spikes)
    if bstat:
        out["log_bstat"] = pd.DataFrame(bstat)
    if steady:
        out["log_steadiness"] = pd.DataFrame(steady)
    return out


@metric("grad_spike_rate", f"steps with gradient norm > {SPIKE_K:g}× the median of the previous {SPIKE_WINDOW} "
        "steps, per 1000 steps (training log)", "Peri-LN §4 (gradient spikes)", "per 1000 steps")
def grad_spike_rate(t, subject: Subject, ref: Subject | None = None):
    """Gradient-spike rate from the training logs; with a reference, the difference of rates."""
    rows = need(t, "log_spikes", subject.models + (ref.models if ref else ()), "training logs (steps.parquet)")
    rate = {r.model: 1000.0 * r.spikes / r.steps if r.steps else math.nan for r in rows.itertuples()}
    return _name_missing(estimate(lambda m, idx: rate.get(m, math.nan), subject, ref), rows, subject, ref,
                         "a training log")


@metric("bstat_fluctuation", "median step-to-step relative change ‖ψ²_t − ψ²_t−1‖/‖ψ²_t−1‖ of the batch "
        "second moment, over the batch-statistic norms, after the LR warm-up (training log)",
        "PowerNorm §3 (Fig. 2: batch statistics fluctuate in NLP)")
def bstat_fluctuation(t, subject: Subject, ref: Subject | None = None):
    """Batch-statistic fluctuation of a PowerNorm / Unified Norm model from its training telemetry."""
    rows = need(t, "log_bstat", subject.models + (ref.models if ref else ()),
                "batch-statistic telemetry (layers.parquet bstat_x2_rel_change)")
    per = rows.groupby("model")["fluctuation"].median()
    return _name_missing(estimate(lambda m, idx: float(per.get(m, math.nan)), subject, ref), rows, subject, ref,
                         "batch-statistic telemetry")


def _name_missing(est, rows: pd.DataFrame, subject: Subject, ref: Subject | None, what: str):
    """`est` whose method names the models without `what` (their value is NaN, so there is no interval): the
    generic 'seeds not finite' would hide that the numbers are missing, not infinite."""
    models = subject.models + (ref.models if ref else ())
    missing = [m for m in models if m not in set(rows["model"])]
    if missing:
        est.method = f"{len(missing)} of {len(models)} models without {what} ({', '.join(missing)}): no interval"
    return est


def _steadiness(t, subject: Subject, column: str, what: str):
    """Median over norm sites of `column` / batch, per model; models without the telemetry are left out."""
    rows = need(t, "log_steadiness", subject.models, what)
    rows = rows[np.isfinite(rows[column]) & np.isfinite(rows["batch"]) & (rows["batch"] > 0) & (rows["steps"] > 0)]
    per = (rows[column] / rows["batch"]).groupby(rows["model"]).median()
    have = tuple(m for m in subject.models if m in per.index)
    if not have:
        raise NotTestable(f"no {what} for {', '.join(subject.models)} after the statistics warm-up")
    est = estimate(lambda m, idx: float(per[m]), Subject(subject.label, have, subject.kind))
    missing = [m for m in subject.models if m not in have]
    if missing:
        est.detail = (f"{', '.join(missing)} left out: trained before this telemetry was logged; "
                      f"measured on {', '.join(have)}")
    return est


_RSTAT = "running-statistic telemetry (layers.parquet rstat_x2_rel_change, logged by runs trained since it exists)"
_DSTAT = "divisor-statistic telemetry (layers.parquet dstat_x2_rel_change, logged by runs trained since it exists)"


@metric("rstat_steadiness", "median over the batch-statistic norms of median_t ‖R_t − R_t−1‖/‖R_t−1‖ of the running "
        "second moment R / median_t ‖ψ²_t − ψ²_t−1‖/‖ψ²_t−1‖ of the batch second moment, same steps, after the LR "
        "and statistics warm-up (training log)", "PowerNorm §4 (running quadratic mean instead of batch statistics)")
def rstat_steadiness(t, subject: Subject, ref: Subject | None = None):
    """Step-to-step movement of a batch-statistic norm's running statistic relative to its batch statistic's."""
    if ref is not None:
        raise ValueError("rstat_steadiness compares a model's two statistics; it takes no reference")
    return _steadiness(t, subject, "running", _RSTAT)


@metric("dstat_steadiness", "median over the batch-statistic norms of median_t ‖D_t − D_t−1‖/‖D_t−1‖ of the second "
        "moment D the training forward divides by / the same for the batch second moment ψ², same steps, after "
        "the LR and statistics warm-up (training log)", "Unified Norm §3 (fluctuation smoothing)")
def dstat_steadiness(t, subject: Subject, ref: Subject | None = None):
    """Step-to-step movement of the statistic a batch-statistic norm divides by relative to its batch statistic's."""
    if ref is not None:
        raise ValueError("dstat_steadiness compares a model's two statistics; it takes no reference")
    return _steadiness(t, subject, "divisor", _DSTAT)
