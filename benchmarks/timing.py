"""Interleaved timing, robust to other load on the machine: every candidate runs once per round, rounds repeat,
and each candidate's times are summarised by median and spread, in wall seconds and in CPU seconds of the
process (CPU time is what a busy neighbour disturbs least). Ratios are taken per round, then summarised, each
median with a 95 % percentile bootstrap over the rounds (the rounds are the paired unit, as in
`interp.analysis.timing`); `goal_verdict` judges a goal on that interval, never on the median alone.

    from timing import interleaved, load_info   # a script in benchmarks/ has this folder on sys.path
"""
from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable

import numpy as np


def summary(xs: list[float]) -> dict:
    """median, min, max, interquartile range and the samples themselves."""
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0], xs[0], xs[0]]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "iqr": q[2] - q[0],
            "samples": [round(x, 6) for x in xs]}


def median_ci(xs: list[float]) -> list[float]:
    """95 % percentile-bootstrap interval of the median of xs (resampling the rounds; NaN with fewer than 2)."""
    from interp.analysis.intervals import bootstrap_interval
    a = np.asarray(xs, dtype=float)
    lo, hi = bootstrap_interval(lambda idx: float(np.median(a[idx])), len(a))
    return [round(lo, 6), round(hi, 6)]


def median_ci_grouped(groups: list[list[float]], n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95 % interval of the median of all rounds of several processes, by a two-level percentile bootstrap: resample
    the processes with replacement, then the rounds within each one drawn, and take the median of what was drawn.
    A process's rounds share its state (memory layout, what else ran), so rounds are not independent across processes
    and a one-level interval over the pooled rounds is too narrow when processes differ. One process: `median_ci`."""
    from interp.analysis.intervals import bootstrap_interval
    gs = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if len(gs) < 2:
        return median_ci(list(gs[0])) if gs else [math.nan, math.nan]
    rng = np.random.default_rng(seed)  # the rounds' draws; bootstrap_interval draws the processes (idx)

    def median_of(idx: np.ndarray) -> float:
        return float(np.median(np.concatenate([gs[i][rng.integers(0, len(gs[i]), len(gs[i]))] for i in idx])))
    lo, hi = bootstrap_interval(median_of, len(gs), n_boot=n_boot, seed=seed)
    return [round(lo, 6), round(hi, 6)]


def pooled(runs: list[dict]) -> dict:
    """`interleaved`'s output for several processes that each ran it (same fns, baseline, rounds): samples pooled in
    process order, so rounds stay paired; every ratio's "ci95" from `median_ci_grouped` over the processes, with each
    process's own median ratio ("per_process_median") and the one-level interval over the pooled rounds ("ci95_rounds")
    beside it. A "split" entry (a second interleaved set) is pooled the same way."""
    first = runs[0]
    out = {"repeats": sum(r["repeats"] for r in runs), "processes": len(runs), "baseline": first["baseline"]}
    for unit in ("wall_s", "cpu_s"):
        out[unit] = {k: summary([x for r in runs for x in r[unit][k]["samples"]]) for k in first[unit]}
    for name, unit in (("ratio_wall", "wall_s"), ("ratio_cpu", "cpu_s")):
        out[name] = {}
        for k in first[name]:
            groups = [[a / b for a, b in zip(r[unit][k]["samples"], r[unit][first["baseline"]]["samples"])]
                      for r in runs]
            flat = [x for g in groups for x in g]
            out[name][k] = {**summary(flat), "ci95": median_ci_grouped(groups), "ci95_rounds": median_ci(flat),
                            "per_process_median": [round(statistics.median(g), 6) for g in groups]}
    if "split" in first:
        out["split"] = pooled([r["split"] for r in runs])
    return out


def goal_key(goal: float, what: str = "") -> str:
    """The results-file key of a goal's verdict, e.g. "goal ≤ 1.10 (on the CI)" (what: ", whole run" ...)."""
    return f"goal ≤ {goal:.2f}{what} (on the CI)"


def goal_verdict(ci: list[float], goal: float) -> str:
    """A ≤ goal judged on the interval: "met" (all of it ≤ goal), "not met" (all of it above), "inconclusive"
    (it straddles the goal, or there is no interval)."""
    lo, hi = ci
    if not (lo == lo and hi == hi):
        return "inconclusive"
    return "met" if hi <= goal else "not met" if lo > goal else "inconclusive"


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, baseline: str, warmup: int = 1) -> dict:
    """Run each of `fns` once per round for `repeats` rounds (after `warmup` untimed rounds).

    Returns {"wall_s": {name: summary}, "cpu_s": {...}, "ratio_wall": {name: summary of name / baseline per
    round, with "ci95" (`median_ci`)}, "ratio_cpu": {...}, "repeats": repeats}."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            f()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    out = {"repeats": repeats, "baseline": baseline,
           "wall_s": {k: summary(v) for k, v in wall.items()}, "cpu_s": {k: summary(v) for k, v in cpu.items()}}
    for name, d in (("ratio_wall", wall), ("ratio_cpu", cpu)):
        out[name] = {}
        for k in fns:
            if k != baseline:
                r = [a / b for a, b in zip(d[k], d[baseline])]
                out[name][k] = {**summary(r), "ci95": median_ci(r)}
    return out


def cpu_probe(rounds: int = 9) -> dict:
    """CPU seconds of one fixed reference workload: a forward of the zoo's default pre-LN model (random init, seed
    0) on 32 × 128 fixed tokens, 1 thread; `summary` of `rounds` after one untimed round. Recorded before and after a
    run judged in absolute seconds, it separates a slow phase of the CPU from slower code (a shared CPU can run the
    same code ~1.7× slower for hours)."""
    import torch

    import interp
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = interp.zoo.build("pre-ln", seed=0).eval()
        x = torch.randint(0, m.cfg.d_vocab, (32, 128), generator=torch.Generator().manual_seed(0))
        cpu = []
        with torch.no_grad():
            for i in range(rounds + 1):
                c0 = time.process_time()
                m(x)
                if i:
                    cpu.append(time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)
    return summary(cpu)


def load_info() -> dict:
    """How busy the machine was: load averages and the processes running (state R) other than this one."""
    running = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    running += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:
                pass
    return {"loadavg_1_5_15": list(os.getloadavg()), "other_running_processes": running,
            "cores": os.cpu_count()}
