"""The main job's budget: `make report` from a fresh clone, cold (every GGUF dequantized into an empty model
cache) then warm (the same cache), with the per-step breakdown the job logs.

For each run: wall seconds, CPU seconds of the job and its workers, peak RSS, the machine's load and the CPU's
speed (`timing.cpu_probe`: one fixed forward's CPU seconds) before and after, every "<model>: <step> in <s> s" line
of the run log and every task's CPU seconds. From the task CPU seconds it also projects the wall time on two
otherwise idle cores (the tasks scheduled biggest first on two workers, plus the serial part) for this zoo and for
a zoo of `--zoo-size` models (the mean zoo task repeated).
Run: .venv/bin/python benchmarks/main_job.py [--repo /work/main] [--zoo-size 50] [--skip-cold] [--small]
(on an otherwise idle machine: the wall times are the point; --small checks the plumbing in a few minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STEP = re.compile(r"^\[\s*([\d.]+) s\] (.+?): (.+) in ([\d.]+) s")
TASK = re.compile(r"^\[\s*([\d.]+) s\] task (.+): ([\d.]+) s CPU$")
DONE = re.compile(r"main job done in ([\d.]+) s wall")
PLAN = re.compile(r"^\[\s*[\d.]+ s\] \d+ tasks \(")  # which real models and how many zoo models were measured
ON_TOKENS = re.compile(r" on \d+ tokens")             # a step's "on 1130 tokens"
ASIDE = re.compile(r"\s*\([^()]*\d[^()]*\)")          # "(NELBO 5.758 ± 0.105)", "(4 variants, interleaved)"
NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w.])")  # a count standing alone (not "step-0", "float64")


def report_command(clone: Path, venv: Path, small: bool) -> list[str]:
    """`make report` in `clone` with `venv`, whose install markers make must not remake (they are older than a
    fresh clone's pyproject.toml, and remaking them would reinstall the package from the clone into `venv`);
    with `small`, the job's smoke run (`interp report --default --small`) instead: a dry run of this script."""
    if small:
        return [str(venv / "bin" / "python"), "-m", "interp.cli", "report", "--default", "--small", "--force",
                "-o", str(clone / "report" / "index.html")]
    keep = [a for m in (".torch", ".installed", ".models") for a in ("-o", str(venv / m))]
    return ["make", "-C", str(clone), *keep, "report", f"VENV={venv}"]


def run_make(clone: Path, venv: Path, cache: Path, small: bool = False) -> dict:
    """`make report` in `clone` with the model cache at `cache`; its log parsed."""
    from timing import cpu_probe, load_info
    env = {**os.environ, "INTERP_CACHE": str(cache), "PYTHONPATH": str(clone)}
    probe_before = cpu_probe()
    before, r0 = load_info(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(report_command(clone, venv, small), env=env, capture_output=True, text=True, check=False,
                       cwd=clone)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(f"make report failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    steps, tasks = [], {}
    for line in p.stdout.splitlines():
        if m := TASK.match(line):
            tasks[m.group(2)] = float(m.group(3))
        elif m := STEP.match(line):
            steps.append({"at_s": float(m.group(1)), "model": m.group(2), "step": m.group(3),
                          "seconds": float(m.group(4))})
    job = DONE.search(p.stdout)
    plan = next((line.split("] ", 1)[1] for line in p.stdout.splitlines() if PLAN.match(line)), None)
    return {"wall_s": wall, "job_wall_s": float(job.group(1)) if job else None, "plan": plan,
            "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
            "peak_rss_gb_per_process": r1.ru_maxrss / 1e6, "load_before": before, "load_after": load_info(),
            "cpu_probe_s": {"before": probe_before, "after": cpu_probe()},
            "task_cpu_s": tasks, "steps": steps, "step_seconds": step_seconds(steps, tasks),
            "log_tail": p.stdout.splitlines()[-8:]}


def step_kind(step: str) -> str:
    """A logged step without its counts, so that the same step on every model reads the same:
    "forward collectors on 1130 tokens" -> "forward collectors", "entropy neurons of 9 models" -> "... of N models"."""
    return NUMBER.sub("N", ASIDE.sub("", ON_TOKENS.sub("", step)))


def step_seconds(steps: list[dict], tasks: dict[str, float]) -> dict[str, dict[str, float]]:
    """The per-step breakdown as one table: {step kind: {who: seconds}}, who being each real model, all zoo models
    together ("zoo (N models)") or the task that logged it (claims, training dynamics); a last row sums each column.
    A step logged twice at the same moment (older jobs logged their precision runs twice) counts once."""
    n_zoo = sum(k.startswith("zoo ") for k in tasks)
    seen, out = set(), {}
    for s in steps:
        kind = step_kind(s["step"])
        if (s["model"], kind, s["at_s"]) in seen:
            continue
        seen.add((s["model"], kind, s["at_s"]))
        who = (s["model"] if f"real {s['model']}" in tasks else
               f"zoo ({n_zoo} models)" if f"zoo {s['model']}" in tasks else s["model"])
        row = out.setdefault(kind, {})
        row[who] = row.get(who, 0.0) + s["seconds"]
    total: dict[str, float] = {}
    for row in out.values():
        for who, v in row.items():
            total[who] = total.get(who, 0.0) + v
    return {k: {who: round(v, 1) for who, v in row.items()} for k, row in {**out, "all logged steps": total}.items()}


def two_core_wall(task_cpu: list[float], serial_cpu: float) -> float:
    """Wall seconds on two idle cores: tasks biggest first onto the less loaded of two workers, plus serial."""
    w = [0.0, 0.0]
    for c in sorted(task_cpu, reverse=True):
        w[w.index(min(w))] += c
    return max(w) + serial_cpu


def project(run: dict, zoo_size: int) -> dict:
    """Projected wall on two idle cores for this run's tasks and for a zoo of `zoo_size` models."""
    tasks = run["task_cpu_s"]
    serial = max(run["cpu_s"] - sum(tasks.values()), 0.0)  # the parent: imports, sample, merge, claims, render
    zoo = [c for k, c in tasks.items() if k.startswith("zoo ")]
    other = [c for k, c in tasks.items() if not k.startswith("zoo ")]
    mean_zoo = sum(zoo) / len(zoo) if zoo else 0.0
    return {"serial_cpu_s": serial, "zoo_models": len(zoo), "mean_zoo_task_cpu_s": mean_zoo,
            "real_and_claims_task_cpu_s": {k: c for k, c in tasks.items() if not k.startswith("zoo ")},
            "two_idle_cores_wall_s": two_core_wall(zoo + other, serial),
            f"two_idle_cores_wall_s_with_{zoo_size}_zoo_models": two_core_wall([mean_zoo] * zoo_size + other, serial)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--venv", type=Path, default=None, help="the venv to run with (default: the repo's .venv)")
    ap.add_argument("--zoo-size", type=int, default=50)
    ap.add_argument("--skip-cold", action="store_true", help="only the warm run (the user's model cache)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--small", action="store_true",
                    help="dry run: the job's smoke run (3 zoo models, MiniLM) instead of make report; implies --no-write")
    a = ap.parse_args()
    from record import RESULTS, command_line, machine_name, utc_now, write_result
    venv = (a.venv or a.repo / ".venv").resolve()
    out = {}
    with tempfile.TemporaryDirectory(prefix="interp-main-job-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(a.repo), str(clone)], check=True)
        commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        cache = Path(tmp) / "model-cache"
        cache.mkdir()
        runs = [] if a.skip_cold else [("cold", cache)]
        runs.append(("warm", cache if not a.skip_cold else Path(os.environ.get("INTERP_CACHE") or
                                                                 Path.home() / ".cache" / "interp")))
        for label, c in runs:
            r = run_make(clone, venv, c, a.small)
            r["projection"] = project(r, a.zoo_size)
            out[label] = r
            print(label, {k: v for k, v in r.items() if k not in ("steps", "log_tail")}, flush=True)
    out["commit"] = commit
    out["budget_s"] = {"warm": 120, "cold": 240}  # make report: the default real models (make report-full adds two)
    out["command"] = command_line()
    out["date"] = utc_now()
    if not (a.no_write or a.small):
        path = RESULTS / "main_job.json"
        old = json.loads(path.read_text()) if path.exists() else None
        print(write_result("main_job", by_cpu(old, machine_name(), out), threads=1,
                           description=" ".join(__doc__.split("\n\n")[0].split())))


def by_cpu(old: dict | None, here: str, run: dict) -> dict:
    """The results to write: one entry per CPU, this run's replacing only this CPU's (seconds judged against a
    fixed budget belong to the CPU that ran them). A file written before entries named their CPU becomes the
    entry of the CPU its machine record names."""
    if old is None:
        return {here: run}
    res = old["results"]
    if "warm" in res:  # the earlier form: one run, its CPU in the file's machine record
        from record import machine_label
        res = {machine_label(old.get("machine") or {}): {**res, "date": old.get("date"), "command": old.get("command")}}
    return {**res, here: run}


if __name__ == "__main__":
    main()
