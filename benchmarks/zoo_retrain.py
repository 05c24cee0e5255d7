"""What training the whole zoo costs, measured on the CPU the result names: the zoo plan re-trained from a clean clone.

    .venv/bin/python benchmarks/zoo_retrain.py --train [--work out/zoo-retrain]   # hours; resumable: run it again
    .venv/bin/python benchmarks/zoo_retrain.py [--work out/zoo-retrain]           # summarise, write the result

--train clones this repository's HEAD into <work>/repo and trains every job of the plan there
(`python -m interp.train.zoo_runner`, ZOO_SEEDS, the LN-removal jobs included) into <work>/zoo, two workers of
one thread each (both cores, as `interp train --zoo` does), with a fresh inductor cache (<work>/inductor), so
compilation is paid as on a fresh machine. An interrupted run resumes where it stopped, its jobs' CPU and wall
seconds adding up. Nothing in data/zoo is touched.

The summary reads <work>/zoo/manifest.json: CPU and wall seconds per job (resource.getrusage of the job's
process, so a busy neighbour stretches wall time far more than CPU time), the zoo's total and the elapsed wall
time, set against the goal fixed before the run (issue 11: the whole zoo within about 3 CPU hours: met at
<= GOAL_CPU_H, "about" within 10 % over it, not met beyond). Per strategy it sets the measured job CPU beside the
projection of `benchmarks/train_step.py` from single steps. And it compares each model's final validation loss
with the shipped model of the same strategy and seed: the re-run repeats the recipe with the same seeds and data
order, so only float rounding differs (another CPU, the compiled step, the order of sums), and how far that moves
a 2000-step run is set beside the spread between seeds. The CPU probe (`timing.cpu_probe`) taken at summary time
places the machine.

--claims runs the main job (`interp.report.main_job.run_default`) twice, on the shipped zoo and on the re-trained
one (<work>/claims-shipped, <work>/claims-retrained; the learning-rate sweep is not re-trained, both read
data/sweep), and the summary then counts the claims' verdicts that stay the same: on the zoo's subjects, a claim
whose verdict flips when only float rounding changed rests on nothing firmer than that rounding.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from record import ROOT, write_result

GOAL_CPU_H = 3.0  # issue 11: "the whole zoo must still train on this machine within about 3 CPU-hours"
ABOUT = 1.10      # "about": up to 10 % over the goal reads "about 3" (fixed with the goal, before any re-run finished)


def budget_verdict(cpu_h: float) -> str:
    """met (<= GOAL_CPU_H), about (within ABOUT of it) or not met."""
    return "met" if cpu_h <= GOAL_CPU_H else "about" if cpu_h <= GOAL_CPU_H * ABOUT else "not met"


def train(work: Path) -> None:
    """Clone HEAD into work/repo (once) and run the zoo queue there until every job of the plan is done."""
    repo = work / "repo"
    if not repo.is_dir():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor")}
    subprocess.run([sys.executable, "-m", "interp.train.zoo_runner", "--workers", "2", "--out", str(work / "zoo"),
                    "--runs", str(work / "runs")], cwd=repo, env=env, check=True)


def claims(work: Path, shipped_dir: Path) -> None:
    """The main job on the shipped and on the re-trained zoo, each writing its claims.json (see --claims)."""
    sweep = work / "sweep"
    if not sweep.exists():
        sweep.symlink_to(shipped_dir.parent / "sweep")
    for tag, zoo in (("shipped", shipped_dir), ("retrained", work / "zoo")):
        code = ("from pathlib import Path; from interp.report.main_job import run_default; "
                f"run_default(Path({str(work / f'claims-{tag}' / 'index.html')!r}), zoo_dir=Path({str(zoo)!r}))")
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def compare_claims(work: Path, strategies: set[str]) -> dict | None:
    """Verdicts of the two main jobs' claims.json side by side, keyed by (claim, model); None unless both exist.
    Zoo rows: a model label that names a zoo strategy (its first word); the real models' rows do not depend on
    the zoo and are counted apart."""
    files = [work / f"claims-{tag}" / "claims.json" for tag in ("shipped", "retrained")]
    if not all(f.is_file() for f in files):
        return None
    a, b = ({(r["claim"], r["model"]): r for r in json.loads(f.read_text())} for f in files)
    zoo = [k for k in a if k in b and k[1].split(" ")[0] in strategies]
    flips = [{"claim": k[0], "model": k[1], "shipped": a[k]["verdict"], "retrained": b[k]["verdict"],
              "value_shipped": a[k]["value"], "interval_shipped": [a[k]["lo"], a[k]["hi"]],
              "value_retrained": b[k]["value"], "interval_retrained": [b[k]["lo"], b[k]["hi"]]}
             for k in zoo if a[k]["verdict"] != b[k]["verdict"]]
    other = [k for k in a if k in b and k not in set(zoo)]
    return {"zoo_rows": len(zoo), "zoo_rows_same_verdict": len(zoo) - len(flips),
            "other_rows": len(other), "other_rows_same_verdict": sum(a[k]["verdict"] == b[k]["verdict"] for k in other),
            "only_in_one": len(set(a) ^ set(b)), "flips": flips}


def _seed_spread(models: dict) -> dict[str, float]:
    """Per strategy with >= 2 seeds: the sample standard deviation of the shipped final validation losses."""
    by: dict[str, list[float]] = {}
    for r in models.values():
        if r.get("status") == "done" and r.get("final_val_loss") is not None and "strategy" in r:
            by.setdefault(r["strategy"], []).append(r["final_val_loss"])
    return {s: statistics.stdev(v) for s, v in by.items() if len(v) >= 2}


def summarise(work: Path, shipped_dir: Path) -> dict:
    """The result (see the module docstring); SystemExit with one line when the re-run is not complete."""
    path = work / "zoo" / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"zoo_retrain: no {path}; train first: python benchmarks/zoo_retrain.py --train")
    man = json.loads(path.read_text())
    models, shipped = man["models"], json.loads((shipped_dir / "manifest.json").read_text())["models"]
    missing = sorted(set(shipped) - {k for k, r in models.items() if r.get("status") == "done"})
    if missing:
        raise SystemExit(f"zoo_retrain: {len(missing)} of {len(shipped)} shipped models not re-trained yet "
                         f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); run --train again")
    cost = man["zoo_cost"]
    projected = {}
    ts = ROOT / "benchmarks" / "results" / "train_step.json"
    if ts.is_file():
        projected = {s: r["new_projected_job_cpu_s"]
                     for s, r in json.loads(ts.read_text())["results"].get("per_strategy", {}).items()
                     if "new_projected_job_cpu_s" in r}
    spread = _seed_spread(shipped)
    rows, by_strategy = {}, {}
    for name, r in sorted(models.items()):
        s = shipped[name]
        row = {"strategy": r.get("strategy", name), "seed": r.get("seed"), "job_cpu_s": r.get("job_cpu_s"),
               "job_wall_s": r.get("job_wall_s"), "shipped_job_cpu_s": s.get("job_cpu_s"),
               "compiled": (r.get("fast_step") or {}).get("compiled"),
               "final_val_loss": r.get("final_val_loss"), "shipped_final_val_loss": s.get("final_val_loss")}
        if row["final_val_loss"] is not None and row["shipped_final_val_loss"] is not None:
            row["val_loss_change"] = row["final_val_loss"] - row["shipped_final_val_loss"]
            if row["strategy"] in spread:
                row["change_over_seed_sd"] = abs(row["val_loss_change"]) / spread[row["strategy"]]
        rows[name] = row
        if row["strategy"] in projected and r.get("job_cpu_s"):
            by_strategy.setdefault(row["strategy"], []).append(r["job_cpu_s"])
    changes = [abs(r["val_loss_change"]) for r in rows.values() if "val_loss_change" in r]
    rel = [r["change_over_seed_sd"] for r in rows.values() if "change_over_seed_sd" in r]
    cpu_h = cost["cpu_s"] / 3600
    from timing import cpu_probe
    commit = subprocess.run(["git", "-C", str(work / "repo"), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    return {
        "goal_cpu_hours": GOAL_CPU_H, "commit_trained": commit,
        "about_cpu_hours": GOAL_CPU_H * ABOUT, "verdict": budget_verdict(cpu_h),
        "cpu_hours": cpu_h, "cpu_s": cost["cpu_s"], "job_wall_s": cost["job_wall_s"],
        "elapsed_wall_s": cost["elapsed_wall_s"], "workers": 2, "models": cost["models"], "tokens": cost["tokens"],
        "by_objective_cpu_s": cost["by_objective_cpu_s"],
        "shipped_cpu_hours": sum(r.get("job_cpu_s") or 0 for r in shipped.values()) / 3600,
        "measured_over_projected": {s: statistics.median(v) / projected[s] for s, v in sorted(by_strategy.items())},
        "val_loss_change": {"median_abs": statistics.median(changes), "max_abs": max(changes),
                            "median_seed_sd": statistics.median(spread.values()),
                            "median_abs_over_seed_sd": statistics.median(rel), "max_abs_over_seed_sd": max(rel),
                            "models": len(changes)},
        "claims": compare_claims(work, {r["strategy"] for r in shipped.values() if "strategy" in r}),
        "cpu_probe_s": cpu_probe(),
        "per_model": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="out/zoo-retrain", help="folder of the clone, the runs and the re-trained zoo")
    ap.add_argument("--train", action="store_true", help="train (or resume) the plan; hours of both cores")
    ap.add_argument("--shipped", default=str(ROOT / "data" / "zoo"))
    ap.add_argument("--claims", action="store_true", help="run the main job on both zoos and compare verdicts")
    ap.add_argument("--no-write", action="store_true", help="print the summary, write nothing")
    a = ap.parse_args()
    work = Path(a.work).resolve()
    if a.train:
        train(work)
    if a.claims:
        claims(work, Path(a.shipped).resolve())
    res = summarise(work, Path(a.shipped))
    print(f"zoo re-trained: {res['models']} models, {res['cpu_hours']:.2f} CPU h (goal <= {GOAL_CPU_H}: "
          f"{res['verdict']}), elapsed {res['elapsed_wall_s'] / 3600:.2f} h with 2 workers; final val loss vs "
          f"shipped: median |change| {res['val_loss_change']['median_abs']:.4f} nats "
          f"({res['val_loss_change']['median_abs_over_seed_sd']:.2f} seed sd)")
    if not a.no_write:
        write_result("zoo_retrain", res, threads=1, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
