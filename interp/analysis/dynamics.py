"""Training dynamics: how variance growth, per-block gradients and massive activations develop along a zoo run
(the view the Peri-LN paper argues from — its Fig. 1 plots variance by depth during training — and the Curse of
Depth's growth argument).

A zoo model keeps weights along training when its directory holds `checkpoints/step-<N>.safetensors` (seed 0 of
`interp.train.zoo.SHIP_SNAPSHOTS`); its kept steps are 0 (rebuilt from the seed, checked against the recorded
init hash), every shipped snapshot and the final step. Each is loaded with `interp.zoo.load(dir, step=N)` and
measured on the same held-out sequences with the report's own collectors:
  SequenceStats  per sequence × stream depth: n, Σx, Σx², max |x|, median |x|
  GradNorms      per block: ‖∇θ_ℓ mean next-token CE‖₂, averaged over batches (the Mix-LN measure)
Three tables (every column in docs/results.md, "Training dynamics"):
  dynamics        model × step × depth: variance (pooled over tokens × dims), top1, median, top1_median
  dynamics_grads  model × step × layer: grad_norm
  dynamics_seq    model × step × sequence × depth: n, s1, s2, top1, median (the claim's bootstrap)
and one metric, `variance_rise`: how much the stream's variance rose between step 0 and the final step, depth by
depth (Peri-LN, abstract: "more balanced variance growth" than Pre-LN; its Fig. 1 shows Pre-LN's variance by
depth growing during training).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from interp.analysis.growth import pooled_variance
from interp.analysis.intervals import NotTestable
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject
from interp.analysis.units import estimate

SEQ_COLUMNS = ["model", "step", "seq", "depth", "n", "s1", "s2", "top1", "median"]
GRAD_COLUMNS = ["model", "step", "tokens", "layer", "grad_norm"]


def kept_steps(directory: str | Path) -> list[int]:
    """The training steps a zoo directory keeps weights for: 0, each shipped snapshot, the final step; [] when it
    ships no snapshots or has no training record (its initialisation cannot be rebuilt then)."""
    d = Path(directory)
    snaps = sorted(int(p.stem.split("-")[1]) for p in (d / "checkpoints").glob("step-*.safetensors"))
    if not snaps:
        return []
    meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
    training = meta.get("training") or {}
    if "seed" not in training or "steps" not in training or \
            (meta.get("config") or {}).get("objective", "causal_lm") != "causal_lm":  # the gradient is next-token CE
        return []
    return sorted({0, *snaps, int(training["steps"])})


def _tokens_per_step(directory: Path) -> int:
    cfg = (json.loads((directory / "config.json").read_text(encoding="utf-8")).get("training") or {}).get("config", {})
    return int(cfg.get("batch_size", 0)) * int(cfg.get("seq_len", 0))


def measure_step(model, tokens: torch.Tensor, batch_size: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-sequence stream rows, per-block gradient rows) of one model on `tokens`, in one pass with backward."""
    import interp.collectors as C
    from interp.analysis.sequences import SequenceStats
    from interp.collectors.grads import GradNorms
    seq, grads = SequenceStats(max_sequences=max(1, len(tokens))), GradNorms()
    res = C.collect(model, tokens, collectors=[seq, grads], batch_size=batch_size, progress=False)
    g = res.tables["grad_norms"]
    g = g[g["kind"] == "param"][["layer", "mean"]].rename(columns={"mean": "grad_norm"})
    return res.tables["seq_stream"][SEQ_COLUMNS[2:]], g.reset_index(drop=True)


def summarize(seq: pd.DataFrame) -> pd.DataFrame:
    """dynamics rows from dynamics_seq rows: per model × step × depth, the pooled variance over every sequence,
    the mean over sequences of max |x|, of median |x| and of their per-sequence ratio (Sun et al.'s criterion
    compares each sequence's largest |x| with its own median)."""
    rows = []
    for (m, step, depth), g in seq.groupby(["model", "step", "depth"], sort=True):
        n, s1, s2 = (g[c].to_numpy(dtype=float)[:, None] for c in ("n", "s1", "s2"))
        med = g["median"].to_numpy(dtype=float)
        ratio = np.where(med > 0, g["top1"].to_numpy(dtype=float) / np.where(med > 0, med, 1.0), np.inf)
        rows.append({"model": m, "step": int(step), "depth": int(depth),
                     "variance": float(pooled_variance(n, s1, s2)[0]), "top1": float(g["top1"].mean()),
                     "median": float(med.mean()), "top1_median": float(ratio.mean()), "n_sequences": len(g)})
    return pd.DataFrame(rows)


def model_dynamics(directory: str | Path, tokens: torch.Tensor, batch_size: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dynamics_seq rows, dynamics_grads rows) of one zoo directory at each of its kept steps (empty if none)."""
    import interp.zoo
    d = Path(directory)
    seqs, grads = [], []
    for step in kept_steps(d):
        model = interp.zoo.load(d, step=step).eval()
        s, g = measure_step(model, tokens, batch_size)
        seqs.append(s.assign(model=d.name, step=step))
        grads.append(g.assign(model=d.name, step=step, tokens=step * _tokens_per_step(d)))
    if not seqs:
        return pd.DataFrame(columns=SEQ_COLUMNS), pd.DataFrame(columns=GRAD_COLUMNS)
    return pd.concat(seqs, ignore_index=True)[SEQ_COLUMNS], pd.concat(grads, ignore_index=True)[GRAD_COLUMNS]


def training_dynamics(dirs, tokens: torch.Tensor, batch_size: int = 8, log=print) -> dict[str, pd.DataFrame]:
    """{"dynamics", "dynamics_grads", "dynamics_seq"} for every zoo dir in `dirs` that keeps steps ({} if none).

    Every step of every model sees the same `tokens` (the report's fixed held-out sample), so sequence i is the
    same text at every step and for every model. A model whose steps cannot be loaded is left out, with a line."""
    import time

    from tqdm.auto import tqdm
    t0 = time.perf_counter()
    kept = [Path(d) for d in dirs if kept_steps(d)]
    seqs, grads = [], []
    for d in tqdm(kept, desc="training dynamics", unit="model", disable=not kept, leave=False):
        try:
            s, g = model_dynamics(d, tokens, batch_size)
        except (ValueError, FileNotFoundError) as e:  # e.g. the rebuilt init no longer matches its recorded hash
            log(f"training dynamics: {d.name} left out ({str(e).splitlines()[0]})")
            continue
        seqs.append(s)
        grads.append(g)
    if not seqs:
        return {}
    seq, g = pd.concat(seqs, ignore_index=True), pd.concat(grads, ignore_index=True)
    dyn = summarize(seq).merge(g[["model", "step", "tokens"]].drop_duplicates(), on=["model", "step"], how="left")
    log(f"training dynamics: {seq['model'].nunique()} models at {dyn.groupby('model')['step'].nunique().sum()} "
        f"kept steps on {len(tokens)} held-out sequences in {time.perf_counter() - t0:.1f} s")
    return {"dynamics": dyn, "dynamics_grads": g, "dynamics_seq": seq}


# ---- the claim's metric ----

def _arrays(t: dict, model: str) -> dict[int, dict[str, np.ndarray]]:
    """{step: {n, s1, s2: [sequences, depths]}} of model's dynamics_seq rows, sequences sorted."""
    rows = t["dynamics_seq"]
    rows = rows[rows["model"] == model]
    out = {}
    for step, g in rows.groupby("step"):
        g = g.sort_values(["seq", "depth"])
        S, D = g["seq"].nunique(), g["depth"].nunique()
        out[int(step)] = {c: g[c].to_numpy(dtype=float).reshape(S, D) for c in ("n", "s1", "s2")}
    return out


WARMUP_FRACTION = 0.1  # the zoo recipe's LR warm-up: 200 of 2000 steps


def warmup_step(steps) -> int | None:
    """The first kept step at or after the LR warm-up (WARMUP_FRACTION of the final step), before the final one."""
    last = max(steps)
    after = [s for s in steps if 0 < s < last and s >= WARMUP_FRACTION * last]
    return min(after) if after else None


def variance_rise(steps: dict[int, dict[str, np.ndarray]], idx: np.ndarray | None = None, start: int = 0) -> float:
    """Mean over depths 1..L of ln(var at the last kept step / var at step `start`), on held-out sequences idx
    (all when None): how much the stream's variance grew over training, in nats, depth by depth."""
    sel = slice(None) if idx is None else idx

    def var(a: dict[str, np.ndarray]) -> np.ndarray:
        return pooled_variance(a["n"][sel], a["s1"][sel], a["s2"][sel])[1:]  # depths 1..L
    v0, v1 = var(steps[start]), var(steps[max(steps)])
    if not ((v0 > 0).all() and (v1 > 0).all()):
        return math.nan
    return float(np.mean(np.log(v1) - np.log(v0)))


@metric("variance_rise", "mean over depths 1..L of ln(var of the residual stream at the final step / at the first "
        "kept step after the LR warm-up; start='init': at step 0), the same held-out sequences at both steps", "Peri-LN abstract (more balanced variance growth) and Fig. 1 "
        "(variance by depth during training)", "nats")
def variance_rise_metric(t, subject: Subject, ref: Subject | None = None, start: str = "warmup"):
    """How much the stream's variance rose over training; with a reference, the subject's rise minus its.
    start: "warmup" (from the first kept step after the LR warm-up) or "init" (from step 0)."""
    df = t.get("dynamics_seq")
    if df is None or df.empty:
        raise NotTestable("no weights along training were measured in this run (zoo models ship them in "
                          "checkpoints/step-<N>.safetensors)")
    have = set(df["model"])

    def kept(s: Subject) -> Subject:
        models = tuple(m for m in s.models if m in have)
        if not models:
            raise NotTestable(f"no weights along training of {s.label} were measured in this run (only seed 0 "
                              "of some strategies ships them)")
        return Subject(s.label, models, s.kind)
    gone = [m for m in subject.models + (ref.models if ref else ()) if m not in have]
    subject, ref = kept(subject), (kept(ref) if ref is not None else None)
    per = {}
    for m in subject.models + (ref.models if ref else ()):
        a = _arrays(t, m)
        first = 0 if start == "init" else warmup_step(a)
        if first is None or first not in a or len(a) < 2:
            raise NotTestable(f"{m}: a kept step {'0' if start == 'init' else 'after the LR warm-up'} and a later "
                              f"step are both needed, got steps {sorted(a)}")
        per[m] = (a, first)
    counts = {len(a[s]["n"]) for a, _ in per.values() for s in a}
    seqs = counts.pop() if len(counts) == 1 else 0  # paired resampling only over sequences every step saw
    est = estimate(lambda m, idx: variance_rise(per[m][0], idx, per[m][1]), subject, ref, seqs)
    est.detail = "steps " + ", ".join(f"{m} {per[m][1]} → {max(per[m][0])}" for m in per)
    if gone:
        est.detail += f"; left out, no weights along training measured: {', '.join(gone)}"
    return est
