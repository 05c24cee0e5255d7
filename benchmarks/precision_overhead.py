"""Precision collector overhead: interp.collect with every default collector, with and without `Precision`.

On the same random tokens (`--batches` batches of `--batch` × `--seq`), the two runs alternate `--repeats`
times in one process (fair on a shared CPU); the ratio of the best times is the overhead. Writes
benchmarks/results/precision_overhead.json (one record per model).
The CPU-time ratio (process_time, median) is kept too: it is less sensitive to other processes on the machine.
Most robust to other load: `ratio_hook_cpu` = 1 + (CPU seconds spent inside the Precision collector's hooks
during a run, thread_time) / (CPU seconds of the run without it), medians over the repeats; `ratio_hook_cpu_per_repeat`
and its min / max / iqr give the spread (each repeat's hook seconds over the same repeat's baseline CPU seconds), and
`load_before` / `load_after` how busy the machine was. The goal (≤ 1.10 on smollm2-135m) is judged on the 95 %
bootstrap interval of the per-repeat median (`timing.median_ci`, `timing.goal_verdict`: met, not met, or
inconclusive when the interval straddles 1.10), twice: on `ratio_hook_cpu` (the hooks' own time) and on the whole
run's CPU ratio (`ratio_cpu_ci95`), which also holds what the collector costs outside its hooks.
Run: .venv/bin/python benchmarks/precision_overhead.py [--models smollm2-135m] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


GOAL = 1.10


def measure(name: str, batch: int, seq: int, n_batches: int, repeats: int) -> dict:
    """Best and median seconds of collect(defaults) and collect(defaults + Precision), interleaved."""
    import torch

    import interp
    from interp.collectors import Precision, default_collectors
    from timing import goal_key, goal_verdict, load_info, median_ci, summary
    model = interp.zoo.build("pre-ln") if name == "zoo" else interp.load_model(name)
    model.eval()
    vocab = model.card.extra.get("d_vocab") or getattr(model.cfg, "d_vocab", 4096)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(10, min(vocab, 40000), (n_batches * batch, seq), generator=g)
    hook_cpu = [0.0]

    def timed(c: Precision) -> Precision:
        """c with its hook's thread CPU time added to hook_cpu (this benchmark's instrument, not the library's)."""
        inner = c._hook

        def wrapped(x, hook):  # TransformerLens passes `hook=` by keyword
            t = time.thread_time()
            inner(x, hook=hook)
            hook_cpu[0] += time.thread_time() - t
        c._hook = wrapped
        return c

    runs = {"collect": lambda: interp.collect(model, tokens, default_collectors(), batch_size=batch, progress=False),
            "collect+precision": lambda: interp.collect(model, tokens, default_collectors() + [timed(Precision())],
                                                        batch_size=batch, progress=False)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    hooks: list[float] = []
    before = load_info()
    with torch.no_grad():
        for f in runs.values():
            f()  # warm-up
        for _ in range(repeats):
            for k, f in runs.items():
                hook_cpu[0] = 0.0
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                if k == "collect+precision":
                    hooks.append(hook_cpu[0])
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    per_repeat = summary([1 + h / c for h, c in zip(hooks, cpu["collect"])])
    ci = median_ci(per_repeat["samples"])
    cpu_ci = median_ci([b / a for a, b in zip(cpu["collect"], cpu["collect+precision"])])
    return {"model": name, "tokens_per_run": n_batches * batch * seq, "batch": batch, "seq": seq,
            "repeats": repeats, "threads": torch.get_num_threads(),
            "collect_s_best": best["collect"], "collect_precision_s_best": best["collect+precision"],
            "ratio_best": best["collect+precision"] / best["collect"],
            "ratio_median": med["collect+precision"] / med["collect"],
            "ratio_cpu_median": cpu_med["collect+precision"] / cpu_med["collect"],
            "precision_hook_cpu_s_median": statistics.median(hooks),
            "ratio_hook_cpu": 1 + statistics.median(hooks) / cpu_med["collect"],
            "ratio_hook_cpu_min": per_repeat["min"], "ratio_hook_cpu_max": per_repeat["max"],
            "ratio_hook_cpu_iqr": per_repeat["iqr"], "ratio_hook_cpu_per_repeat": per_repeat["samples"],
            "ratio_hook_cpu_per_repeat_median": per_repeat["median"], "ratio_hook_cpu_ci95": ci,
            goal_key(GOAL): goal_verdict(ci, GOAL),
            "ratio_cpu_ci95": cpu_ci, goal_key(GOAL, ", whole run"): goal_verdict(cpu_ci, GOAL),
            "collect_cpu_s_median": cpu_med["collect"],
            "ratios_per_repeat": [b / a for a, b in zip(times["collect"], times["collect+precision"])],
            "load_before": before, "load_after": load_info()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.models.split(","):
        rows.append(measure(name, a.batch, a.seq, a.batches, a.repeats))
        print(json.dumps(rows[-1], indent=1), flush=True)
    from record import write_result
    path = write_result("precision_overhead", rows, threads=a.threads, description=(
        "interp.collect with every default collector, with and without the Precision collector, on the same "
        "random tokens, interleaved repeats in one process; goal: <= 1.10 on smollm2-135m, judged on the 95 % bootstrap "
        "interval of the per-repeat median of ratio_hook_cpu (the collector's own CPU time over the run's, robust "
        "to other load) and of the whole run's CPU ratio; ratio_best / ratio_median: wall clock"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
