"""The zoo job queue: every (strategy, seed) of the plan, trained by worker processes that each take the next
job nobody holds, resume it where it stopped, and record it in data/zoo/manifest.json under a lock.

Each job runs in a fresh process (`python -m interp.train.zoo_runner --next`), so a worker loop picks up the
plan and presets as they are on disk when the job starts. A job is done when data/zoo/<name>/config.json holds
a finished training record with the current recipe; it is held while a worker holds `<runs>/<name>.lock`
(released by the OS when the worker dies); it is skipped while `<runs>/<name>/FAILED` exists (the traceback of
its last attempt: delete the file to retry) or while its strategy is listed in `<runs>/HOLD` (one name a line).
"""
from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from interp.console import say  # the trainers run in parallel processes that share stdout and stderr
from interp.outputs import read_json
from interp.train.zoo import (SHIP_SNAPSHOTS, ZOO_DIR, ZOO_EXCEPTIONS, ZOO_NOTES, ZOO_SIZE, ZOO_STEPS,
                              _write_json, exception_config, model_name, train_one, zoo_train_config)

# Seeds per strategy: 3 where a claim compares loss, growth or gradients across strategies, 1 elsewhere.
ZOO_SEEDS: dict[str, int] = {
    "pre-ln": 3, "post-ln": 3, "peri-ln": 3, "mix-ln": 3, "lns": 3, "pre-rmsnorm": 3, "powernorm": 3,
    "unified-norm": 3, "pre-rmsnorm-qk": 3, "reordered": 3, "deepnorm": 3,
    "mdlm-tdln": 3, "mdlm-adaln": 3, "mdlm-ln": 3,
    "pre-crmsnorm": 1, "dyt": 1, "no-norm": 1, "td-ln": 1,
}
NEXT_DONE = 3  # exit code of `--next` when no job is left


def plan(seeds: dict[str, int] | None = None, strategies: list[str] | None = None) -> list[tuple[str, int]]:
    """Jobs in priority order: seed 0 of every strategy, then seed 1 of those with more, then seed 2, ...
    Only strategies that exist in interp.zoo.STRATEGIES now."""
    from interp.zoo import STRATEGIES
    seeds = ZOO_SEEDS if seeds is None else seeds
    names = [s for s in (strategies or seeds) if s in STRATEGIES]
    top = max((seeds.get(s, 1) for s in names), default=0)
    return [(s, k) for k in range(top) for s in names if k < seeds.get(s, 1)]


def _saved(out: Path, strategy: str, seed: int) -> dict | None:
    """out/<name>/config.json of (strategy, seed), read and checked (a JSON object whose 'config' and 'training',
    where present, are objects); None when there is none. A damaged one raises a ValueError naming it."""
    p = Path(out) / model_name(strategy, seed) / "config.json"
    if not p.is_file():
        return None
    saved = read_json(p, lambda why: _not_a_config(p, why))
    if not (isinstance(saved, dict) and isinstance(saved.get("training", {}), dict)
            and isinstance(saved.get("config", {}), dict)):
        raise _not_a_config(p, "not a JSON object with 'config' and 'training' objects")
    return saved


def is_done(out: Path, strategy: str, seed: int, steps: int) -> bool:
    """Whether out/<name> holds a finished model of (strategy, seed) trained with the current recipe."""
    saved = _saved(out, strategy, seed)
    if saved is None:
        return False
    t = saved.get("training", {})
    cfg, _ = exception_config(strategy, zoo_train_config(steps, seed=seed))
    return (t.get("status") == "done" and t.get("seed") == seed and t.get("strategy") == strategy
            and t.get("config") == json.loads(json.dumps(cfg.to_dict()))
            and _preset_matches(strategy, saved.get("config", {})))


def replaced_unasked(out: Path, strategy: str, seed: int, steps: int) -> str | None:
    """What training (strategy, seed) for `steps` updates would replace in `out` that the user did not ask to: a
    finished model trained for another number of steps, or a model without a training record (one saved there by
    hand); None when there is nothing or an unfinished run (resumed) or a model of the same step count (retrained
    when its recipe is older, as the zoo's own updates need). A damaged config raises as `is_done` does."""
    saved, name = _saved(out, strategy, seed), model_name(strategy, seed)
    if saved is None:
        return None
    t = saved.get("training")
    if t is None:
        return f"{name} (a model without a training record)"
    if t.get("status") != "done" or t.get("steps") == steps:
        return None
    return f"{name} ({t.get('steps')} steps)"


def check_replace(out: Path, steps: int, strategies: list[str] | None = None,
                  seeds: dict[str, int] | None = None) -> None:
    """Refuse, before any work, what `replaced_unasked` finds: `interp train pre-ln --steps 5` into data/zoo would
    swap the shipped 2000-step model for a 5-step one (`--force` allows it)."""
    from interp.outputs import OutputRefused
    found = [r for s, k in plan(seeds, strategies) if (r := replaced_unasked(out, s, k, steps)) is not None]
    if found:
        names = ", ".join(found[:3]) + (" …" if len(found) > 3 else "")
        raise OutputRefused(f"{out} holds models that training for {steps} steps would replace: {names}. Give "
                            "another --out for a separate zoo, or pass --force to replace them")


def _not_a_config(p: Path, why: str) -> ValueError:
    return ValueError(f"{p} is not a zoo checkpoint's config ({why}), so whether {p.parent.name} is trained cannot "
                      f"be told; move the folder {p.parent} away (or delete it) to train it again, or choose "
                      "another --out")


def check_out(out: Path, steps: int, strategies: list[str] | None = None,
              seeds: dict[str, int] | None = None) -> None:
    """Read the config of every job of the plan already in `out` (`is_done`), before any work: a damaged one is
    one ValueError naming it here, not a failure of every job process that meets it."""
    for strategy, seed in plan(seeds, strategies):
        is_done(out, strategy, seed, steps)


def _preset_matches(strategy: str, model_cfg: dict) -> bool:
    """Whether a saved model config has every field its preset sets now (a field saved before it existed counts
    as its default): a preset changed since training (e.g. MDLM's rotary positions) makes the model stale."""
    import dataclasses

    from interp.zoo import STRATEGIES
    from interp.zoo.config import ZooConfig
    defaults = {f.name: f.default for f in dataclasses.fields(ZooConfig)}
    preset = json.loads(json.dumps(STRATEGIES.get(strategy, {})))
    return all(model_cfg.get(k, defaults.get(k)) == v for k, v in preset.items())


def held(runs: Path) -> set[str]:
    p = Path(runs) / "HOLD"
    return {ln.strip() for ln in p.read_text().splitlines() if ln.strip()} if p.is_file() else set()


@contextmanager
def _flock(path: Path, block: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _out_lock(out: Path):
    """An exclusive lock on the folder `out` itself (no lock file): every worker writing into `out` takes it,
    whatever its --runs folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_zoo_manifest(path: Path) -> bool:
    """Whether `path` holds a manifest this queue wrote (a JSON object with `models` and `train_config`)."""
    try:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and isinstance(m.get("models"), dict) and "train_config" in m


def check_manifest(out: Path) -> None:
    """Refuse (OutputRefused, one line naming the path) an out/manifest.json that is not a zoo manifest:
    recording a model would overwrite it (interp.outputs' writing rule)."""
    from interp.outputs import check_file_target
    check_file_target(Path(out) / "manifest.json", is_zoo_manifest, "interp zoo manifest", force=True)


def record(out: Path, name: str, rec: dict, data_desc: dict, baselines: dict) -> dict:
    """Put `rec` into out/manifest.json under models[name] (read-modify-write under a lock on `out`, so workers
    with different --runs folders never lose each other's records); return the manifest."""
    import torch
    mpath = Path(out) / "manifest.json"
    with _out_lock(out):
        check_manifest(out)
        m = json.loads(mpath.read_text()) if mpath.is_file() else {}
        if m.get("version") != 2:  # the first zoo's single-seed manifest: start over
            m = {"version": 2, "models": {}}
        m.update({"size": ZOO_SIZE, "train_config": zoo_train_config(ZOO_STEPS).to_dict(), "data": data_desc,
                  "baselines_nats_per_token": baselines, "seeds": ZOO_SEEDS,
                  "exceptions": {k: v["why"] for k, v in ZOO_EXCEPTIONS.items()}, "notes": ZOO_NOTES,
                  "ship_snapshots": list(SHIP_SNAPSHOTS),
                  "cond": "td-ln (autoregressive): cond = start of the window in the token stream / stream length, "
                          "in [0, 1); mdlm-*: cond = t, the masking probability of the sequence",
                  "torch": torch.__version__, "threads": torch.get_num_threads()})
        m["models"][name] = rec
        m["models"] = dict(sorted(m["models"].items()))
        m["zoo_cost"] = zoo_cost(m["models"])
        _write_json(mpath, m)
    return m


def zoo_cost(models: dict) -> dict:
    """What training the zoo took: summed job CPU and wall seconds, and the elapsed wall time from the first job's
    start to the last job's end (jobs run in parallel workers, so elapsed < summed wall)."""
    done = [r for r in models.values() if r.get("status") == "done" and r.get("started_at")]
    if not done:
        return {}
    t = lambda s: time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
    first, last = min(t(r["started_at"]) for r in done), max(t(r["finished_at"]) for r in done)
    return {"models": len(done), "tokens": sum(r["tokens"] for r in done),
            "cpu_s": round(sum(r.get("job_cpu_s", 0) for r in done), 1),
            "cpu_hours": round(sum(r.get("job_cpu_s", 0) for r in done) / 3600, 2),
            "job_wall_s": round(sum(r.get("job_wall_s", 0) for r in done), 1),
            "elapsed_wall_s": round(last - first, 1),
            "by_objective_cpu_s": {o: round(sum(r.get("job_cpu_s", 0) for r in done if r.get("objective") == o), 1)
                                   for o in sorted({r.get("objective", "causal_lm") for r in done})}}


@functools.lru_cache(maxsize=1)
def _prepared():
    """The KJV split and tokenized once per process (a job process trains one model; tests train several)."""
    from interp.data import TOKENIZER_PATH, prepare
    return prepare("kjv", TOKENIZER_PATH)


def run_next(out: Path = ZOO_DIR, runs: Path = Path("out/zoo-runs"), steps: int = ZOO_STEPS,
             strategies: list[str] | None = None, seeds: dict[str, int] | None = None, size: dict | None = None,
             progress: bool = True) -> str | None:
    """Train the next pending job of the plan (resuming it if interrupted); its name, or None if none is left."""
    import torch
    from interp.data import unigram_entropy
    torch.set_num_threads(1)
    out, runs = Path(out), Path(runs)
    hold = held(runs)
    for strategy, seed in plan(seeds, strategies):
        name = model_name(strategy, seed)
        taken = lambda: (runs / name / "FAILED").is_file() or is_done(out, strategy, seed, steps)
        if strategy in hold or taken():
            continue
        with _flock(runs / f"{name}.lock", block=False) as got:
            if not got or taken():  # again under the lock: another worker may have finished or failed it meanwhile
                continue
            try:
                data = _prepared()
                cfg, exc = exception_config(strategy, zoo_train_config(steps, seed=seed))
                rec = train_one(strategy, data, cfg, out / name, runs / name, size=size, seed=seed,
                                progress=progress, exception=exc,
                                ship_snapshots=seed == 0 and strategy in SHIP_SNAPSHOTS)
                if rec["status"] != "done":
                    raise RuntimeError(rec["message"])
                base = unigram_entropy(data.train_tokens, data.val_tokens, data.tokenizer.vocab_size)
                record(out, name, rec, data.describe(), base)
                say(f"{name:<22} done: val loss {rec['final_val_loss']:.4f}, {rec['job_cpu_s']:.0f} CPU s")
            except Exception:
                (runs / name).mkdir(parents=True, exist_ok=True)
                (runs / name / "FAILED").write_text(traceback.format_exc())
                say(f"{name}: failed, see {runs / name / 'FAILED'}", file=sys.stderr)
            return name
    return _next_lnfree(out, runs, steps, seeds, hold, strategies) or _record_unrecorded(out, runs, steps, strategies,
                                                                                         seeds)


def _recorded(out: Path, name: str) -> bool:
    """Whether out/manifest.json records model `name` as its config.json's training record says."""
    try:
        r = json.loads((Path(out) / "manifest.json").read_text(encoding="utf-8"))["models"][name]
        t = json.loads((Path(out) / name / "config.json").read_text(encoding="utf-8"))["training"]
        same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN equals NaN
        return isinstance(r, dict) and all(same(t.get(k), v) for k, v in r.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _record_unrecorded(out: Path, runs: Path, steps: int, strategies: list[str] | None,
                       seeds: dict[str, int] | None) -> str | None:
    """Record the finished models the manifest lacks (a job killed after installing its model, before recording
    it: it is done, so no job would record it again), under their job's lock; the job's name, or None."""
    from interp.data import unigram_entropy
    from interp.train import lnfree_job as J
    groups = [(model_name(s, k), [model_name(s, k)]) for s, k in plan(seeds, strategies) if is_done(out, s, k, steps)]
    groups += [(model_name(J.LNFREE, k), [model_name(key, k) for key in (J.LNFREE, J.VANILLA, J.SINGLE)])
               for k in _source_seeds(seeds, strategies) if is_done(out, J.SOURCE, k, steps) and J.is_done(out, k)]
    for job, names in groups:
        if all(_recorded(out, n) for n in names):
            continue
        with _flock(runs / f"{job}.lock", block=False) as got:
            if not got:  # its worker is still at it: it records them itself
                continue
            data = _prepared()
            base = unigram_entropy(data.train_tokens, data.val_tokens, data.tokenizer.vocab_size)
            for n in names:
                if not _recorded(out, n):
                    record(out, n, json.loads((out / n / "config.json").read_text())["training"],
                           data.describe(), base)
            say(f"{job:<22} recorded (its job stopped before recording it)")
            return job
    return None


def _source_seeds(seeds: dict[str, int] | None, strategies: list[str] | None) -> list[int]:
    """The pre-ln seeds of the plan, whose LN removal is part of it (none when pre-ln is not planned)."""
    from interp.train.lnfree_job import SOURCE
    return [k for s, k in plan(seeds, strategies) if s == SOURCE]


def _next_lnfree(out: Path, runs: Path, steps: int, seeds: dict[str, int] | None, hold: set[str],
                 strategies: list[str] | None = None) -> str | None:
    """LN removal of each finished pre-ln seed of the plan (interp.train.lnfree_job), once the strategies' jobs
    are taken."""
    from interp.train import lnfree_job as J
    if J.LNFREE in hold:
        return None
    for seed in _source_seeds(seeds, strategies):
        name = model_name(J.LNFREE, seed)
        taken = lambda: (runs / name / "FAILED").is_file() or J.is_done(out, seed)
        if not is_done(out, J.SOURCE, seed, steps) or taken():
            continue
        with _flock(runs / f"{name}.lock", block=False) as got:
            if not got or taken():  # again under the lock, as in run_next
                continue
            try:
                data = _prepared()
                from interp.data import unigram_entropy
                base = unigram_entropy(data.train_tokens, data.val_tokens, data.tokenizer.vocab_size)
                J.run(out, seed, data)
                for key in (J.LNFREE, J.VANILLA, J.SINGLE):
                    n = model_name(key, seed)
                    record(out, n, json.loads((out / n / "config.json").read_text())["training"],
                           data.describe(), base)
                say(f"{name:<22} done")
            except Exception:
                (runs / name).mkdir(parents=True, exist_ok=True)
                (runs / name / "FAILED").write_text(traceback.format_exc())
                say(f"{name}: failed, see {runs / name / 'FAILED'}", file=sys.stderr)
            return name
    return None


def check_failed(out: Path, runs: Path, steps: int, strategies: list[str] | None = None,
                 seeds: dict[str, int] | None = None) -> None:
    """Once no job is left: the jobs of the plan marked FAILED and not done (skipped, so the zoo lacks them) as one
    RuntimeError naming them, so that a run which left models untrained does not end as a success."""
    from interp.train import lnfree_job as J
    pl = plan(seeds, strategies)
    jobs = [(model_name(s, k), lambda s=s, k=k: is_done(out, s, k, steps)) for s, k in pl]
    jobs += [(model_name(J.LNFREE, k), lambda k=k: J.is_done(out, k)) for s, k in pl if s == J.SOURCE]
    failed = [n for n, done in jobs if (Path(runs) / n / "FAILED").is_file() and not done()]
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) failed and were skipped: {', '.join(failed)}; the traceback is in "
                           f"{Path(runs)}/<job>/FAILED: fix the cause, delete the file and run again (finished models "
                           "are kept)")


MAX_CRASHES = 5       # consecutive crashes of one worker's job process before it stops
CRASH_BACKOFF_S = 60  # wait after a crash before retrying (the next job may run once the cause is gone)


def work(workers: int = 2, out: Path = ZOO_DIR, runs: Path = Path("out/zoo-runs"), steps: int = ZOO_STEPS,
         strategies: list[str] | None = None, nice: int = 0, n_seeds: int | None = None) -> None:
    """Run `workers` loops in parallel, each training one job per fresh process until none is left
    (`n_seeds`: seeds 0..n-1 of every strategy instead of the plan's ZOO_SEEDS)."""
    args = [sys.executable, "-m", "interp.train.zoo_runner", "--next", "--out", str(out), "--runs", str(runs),
            "--steps", str(steps)] + (["--strategies", ",".join(strategies)] if strategies else []) + (
            ["--seeds", str(n_seeds)] if n_seeds else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    gave_up: list[int] = []

    def loop() -> None:
        crashes = 0
        while True:
            rc = subprocess.run(args, env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None).returncode
            if rc == NEXT_DONE:
                return
            if rc == 0:
                crashes = 0
                continue
            # the job process itself crashed (killed, or the code on disk does not import): back off and retry,
            # but a crash that repeats is a fault, not bad luck: stop instead of retrying forever
            crashes += 1
            if crashes >= MAX_CRASHES:
                gave_up.append(rc)
                return
            time.sleep(CRASH_BACKOFF_S)

    import threading
    threads = [threading.Thread(target=loop) for _ in range(workers)]
    for i, t in enumerate(threads):
        t.start()
        time.sleep(2 if i + 1 < len(threads) else 0)  # stagger so the workers take different jobs
    for t in threads:
        t.join()
    if gave_up:
        raise RuntimeError(f"{len(gave_up)} of {workers} worker(s) stopped: the job process crashed {MAX_CRASHES} "
                           f"times in a row (exit status {gave_up[0]}); run `{' '.join(args[1:])}` to see its error, "
                           "fix it and start again (finished jobs are kept)")
    check_failed(out, runs, steps, strategies, {s: n_seeds for s in (strategies or ZOO_SEEDS)} if n_seeds else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m interp.train.zoo_runner")
    p.add_argument("--next", action="store_true", help="train one pending job and exit (3 when none is left)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ZOO_DIR))
    p.add_argument("--runs", default="out/zoo-runs")
    p.add_argument("--steps", type=int, default=ZOO_STEPS)
    p.add_argument("--strategies", default=None, help="comma-separated subset of the plan")
    p.add_argument("--nice", type=int, default=0)
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 of every strategy (default: ZOO_SEEDS)")
    a = p.parse_args(argv)
    strategies = a.strategies.split(",") if a.strategies else None
    seeds = {s: a.seeds for s in (strategies or ZOO_SEEDS)} if a.seeds else None
    if a.next:
        return 0 if run_next(Path(a.out), Path(a.runs), a.steps, strategies, seeds, progress=False) else NEXT_DONE
    try:
        work(a.workers, Path(a.out), Path(a.runs), a.steps, strategies, a.nice, a.seeds)
    except RuntimeError as e:
        print(f"zoo_runner: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
