"""Interleaved timing, robust to other load on the machine: every candidate runs once per round, rounds repeat,
and each candidate's times are summarised by median and spread, in wall seconds and in CPU seconds of the
process (CPU time is what a busy neighbour disturbs least). Ratios are taken per round, then summarised.

    from timing import interleaved, load_info   # a script in benchmarks/ has this folder on sys.path
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def summary(xs: list[float]) -> dict:
    """median, min, max, interquartile range and the samples themselves."""
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0], xs[0], xs[0]]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "iqr": q[2] - q[0],
            "samples": [round(x, 6) for x in xs]}


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, baseline: str, warmup: int = 1) -> dict:
    """Run each of `fns` once per round for `repeats` rounds (after `warmup` untimed rounds).

    Returns {"wall_s": {name: summary}, "cpu_s": {...}, "ratio_wall": {name: summary of name / baseline per
    round}, "ratio_cpu": {...}, "repeats": repeats}."""
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
        out[name] = {k: summary([a / b for a, b in zip(d[k], d[baseline])]) for k in fns if k != baseline}
    return out


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
