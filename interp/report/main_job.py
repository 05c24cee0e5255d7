"""The main job (`make report`, `interp report --default`): collect on the shipped zoo and the packaged real
models, measure attribution and conversion on the zoo, read the training logs, and write report/index.html.

Nothing is cached by this job: every number in the report is measured in this run, on a fixed held-out
sample of the corpus (validation books), except training curves and the LR sweep, which are read from the
logs shipped with the zoo (data/zoo, data/sweep) because training is not re-run here.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from interp.console import say  # the job's processes share stdout: each line in one write

if TYPE_CHECKING:  # imported where used: run_default checks its arguments before importing them
    import pandas as pd
    import torch

# The default job's real models: the subjects of the claims' real-model rows, one per placement the zoo lacks at
# scale (SmolLM2: Pre-RMSNorm, Gemma-3: Peri-LN with QK-norm, MiniLM: Post-LN encoder); --small keeps the last only.
REAL_MODELS = ("smollm2-135m", "gemma-3-270m", "minilm-l6")
# The reach models, measured with `full` (`interp report --default --full`, `make report-full`): a larger
# Pre-RMSNorm LM and a second Post-LN encoder; they add rows to the same tables and claims, no new kind of evidence.
REACH_MODELS = ("qwen2.5-0.5b", "mpnet-base")


class Progress:
    """Prints each step with its elapsed time since the job started (`t0`, wall clock, shared by the job's worker
    processes) and keeps the lines for the report's "how it was made" notes."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0, self.lines = time.time() if t0 is None else t0, []

    def __call__(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] {msg}"
        say(line)
        self.lines.append(line)


# Per-model steps that other parts of the report add: "module:function" names, each called as
# fn(model, ctx: JobContext, log: Progress) -> dict[str, DataFrame] in the worker, right after the model's
# collection, for every zoo and real model (return {} to skip a model). One line per step.
MODEL_STEPS: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobContext:
    """What every task of the job needs (picklable: it travels to the worker processes)."""

    zoo_tokens: torch.Tensor   # [n, t] held-out tokens of the zoo's tokenizer
    texts: tuple[str, ...]     # held-out passages for the real models
    results_dir: Path
    t0: float                  # when the job started (time.time())
    small: bool
    force: bool = False        # may replace results folders this job did not write (`check_results_target`)


# The `written_by` field of the marker of every results folder the job saves: the job replaces its own earlier
# results without --force, a results folder from anywhere else (`interp collect`) only with --force.
JOB = "interp report --default"


def job_wrote(directory: Path) -> bool:
    """Whether `directory` is a results folder this job saved (its marker says so)."""
    from interp.outputs import read_marker
    m = None if Path(directory).is_symlink() else read_marker(directory)
    return m is not None and m.get("kind") == "results" and m.get("written_by") == JOB


def check_results_target(directory: Path, force: bool = False) -> None:
    """May the job save a model's results at `directory`? Absent, empty or the job's own earlier result: yes;
    a results folder the job did not write (from `interp collect`): only with `force`; anything else (a user's
    folder or file, another kind of output, a file above it): OutputRefused, one line naming it."""
    from interp.collectors.results import KIND
    from interp.outputs import OutputRefused, check_dir_target
    if job_wrote(directory):
        return
    if check_dir_target(directory, KIND, force=True, what="interp results folder") and not force:
        raise OutputRefused(f"{directory} holds results that `{JOB}` did not write (from `interp collect`?); "
                            "refusing to replace them: pass --force to replace them, or choose another -o folder")


def save_results(res, directory: Path, force: bool = False) -> Path:
    """Save `res` at `directory` (atomically: written beside it, then renamed) with a marker saying this job
    wrote it, replacing only what `check_results_target` allows (checked again here, just before the swap)."""
    import shutil

    from interp.collectors.results import KIND
    from interp.outputs import install_dir, temp_dir
    check_results_target(directory, force)
    staging = temp_dir(directory)
    try:
        res.save(staging / "results")
        install_dir(staging / "results", directory, KIND, force=True, written_by=JOB)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def results_folder(results_dir: Path, name: str) -> Path:
    """Where the job saves model `name`'s results."""
    return Path(results_dir) / name.replace("/", "_")


def zoo_model_name(d: Path) -> str:
    """The name `interp.zoo.load(d)` gives its model (the strategy, '.seedN' for seed N > 0; what its results are
    saved under), read from its config.json without loading the weights; the folder's name if it does not say."""
    import json
    try:
        meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
        strategy, training = meta["config"]["strategy"], meta.get("training") or {}
        if not isinstance(strategy, str) or not isinstance(training, dict):
            return d.name
        from interp.zoo.io import seed_name
        return seed_name(strategy, training.get("seed"))
    except (OSError, ValueError, KeyError, TypeError):
        return d.name


def model_steps(model, ctx: JobContext, log: Progress) -> list[dict[str, pd.DataFrame]]:
    """Run MODEL_STEPS on `model`, each timed in the log."""
    import importlib
    out = []
    for ref in MODEL_STEPS:
        mod, fn = ref.split(":")
        t = time.perf_counter()
        out.append(getattr(importlib.import_module(mod), fn)(model, ctx, log))
        log(f"{model.card.name}: {fn} in {time.perf_counter() - t:.1f} s")
    return out


def zoo_dirs(zoo_dir: Path) -> list[Path]:
    """Zoo checkpoints under `zoo_dir` (each a directory written by model.save)."""
    if not zoo_dir.is_dir():
        return []
    return sorted(d for d in zoo_dir.iterdir() if (d / "config.json").is_file() and (d / "model.safetensors").is_file())


def forward_collectors() -> list:
    """One pass, every token: residual statistics, massive activations, angular distance (n = 1, 2, 4), norm
    scales, per-sequence numbers, precision safety per site."""
    from interp.analysis.sequences import SequenceStats  # per-sequence numbers: the claims' bootstrap
    from interp.collectors import LayerEffect, MassiveActivations, NormScales, Precision, ResidualStats
    return [ResidualStats(), MassiveActivations(), LayerEffect(ns=(1, 2, 4), skip=False), NormScales(),
            SequenceStats(), Precision()]


def costly_collectors(grads: bool = True, skip: bool = True) -> list:
    """Costly passes, run on a subset of the sample: the skip-one-block loss (the skipped blocks' forwards) and
    gradient norms (a backward per batch)."""
    from interp.collectors import LayerEffect
    from interp.collectors.grads import GradNorms
    return ([LayerEffect(ns=(1,), skip=True)] if skip else []) + ([GradNorms()] if grads else [])


def collect_one(model, data, log: Progress, out_dir: Path | None, batch_size: int, ablate: bool,
                costly_items: int, layer_skip: pd.DataFrame | None = None, skip: bool = True,
                force: bool = False) -> tuple:
    """Collect every table on `data` (the costly ones on its first `costly_items` items); for causal LMs also
    the massive-activation ablation. A given `layer_skip` table (pooled from the per-sequence skip losses of the
    same items) stands in for the costly pass's own skip forwards; skip=False measures no skip losses at all.
    The Results are saved under `out_dir` (`save_results`; `force` as there). Returns (Results, extra canonical
    tables)."""
    import interp.collectors as C
    from interp.analysis.ablation import ablation_per_sequence
    name = model.card.name
    from interp.collectors.attn_logits import for_model as attn_logit_collectors
    cols = forward_collectors() + attn_logit_collectors(model)  # + AttnLogits where q, k are hooked
    t = time.perf_counter()
    res = C.collect(model, data, collectors=cols, batch_size=batch_size, progress=False)
    log(f"{name}: forward collectors on {res.meta.get('n_tokens', '?')} tokens in {time.perf_counter() - t:.1f} s")
    t, sub, own_skip = time.perf_counter(), data[:costly_items], skip and layer_skip is None
    try:
        extra_res = C.collect(model, sub, collectors=costly_collectors(skip=own_skip), batch_size=batch_size,
                              progress=False)
    except (ValueError, NotImplementedError, RuntimeError) as e:  # a collector that cannot run on this model
        log(f"{name}: gradient norms unavailable ({str(e).splitlines()[0]})")
        extra_res = (C.collect(model, sub, collectors=costly_collectors(grads=False), batch_size=batch_size,
                               progress=False) if own_skip else None)
    got = dict(extra_res.tables) if extra_res is not None else {}
    if layer_skip is not None:
        got["layer_skip"] = layer_skip
    for k in ("layer_skip", "grad_norms"):
        if k in got:
            res.tables[k] = got[k]
    n_tok = extra_res.meta.get("n_tokens") if extra_res is not None else None
    res.meta["costly_pass"] = {"items": len(sub), "n_tokens": n_tok,
                               "tables": [k for k in ("layer_skip", "grad_norms") if k in got]}
    how = "" if own_skip or not skip else " (skip losses pooled from the per-sequence pass)"
    log(f"{name}: {'skip-one-block losses + ' if own_skip else ''}gradient norms on {n_tok or '?'} tokens "
        f"in {time.perf_counter() - t:.1f} s{how}")
    extra = {}
    massive = cols[1]
    if ablate and model.card.objective != "encoder":
        try:
            t = time.perf_counter()
            # + per-sequence losses; "none" is the forward collectors' own seq_loss (same data, same batches)
            extra = ablation_per_sequence(massive, model, data, batch_size=batch_size,
                                          seq_loss=res.tables.get("seq_loss"))
            log(f"{name}: massive-activation ablation (none / zero / mean) in {time.perf_counter() - t:.1f} s")
        except ValueError as e:
            log(f"{name}: no ablation ({str(e).splitlines()[0]})")
    if out_dir is not None:
        save_results(res, results_folder(out_dir, name), force)
    return res, extra


PROMPT, TARGET = "The capital of France is", " Paris"   # the DLA example on real models


def attribution_tables(model, tokens: torch.Tensor, log: Progress, example: bool = False) -> dict[str, pd.DataFrame]:
    """DLA (next token at the second-to-last position) and the logit lens of a zoo model, when supported."""
    from interp.attribution import dla, logit_lens
    from interp.report.inputs import from_dla, from_logit_lens
    out: dict[str, pd.DataFrame] = {}
    x = tokens[: min(4, len(tokens))]
    pos = x.shape[1] - 2
    try:
        t = from_dla(dla(model, x, target=x[:, pos + 1], pos=pos))
        out.update(t if example else {"dla_error": t["dla_error"]})
    except (ValueError, NotImplementedError, KeyError) as e:
        log(f"{model.card.name}: no DLA ({str(e).splitlines()[0]})")
    try:
        out.update(from_logit_lens(logit_lens(model, x, target=None)))
    except (ValueError, NotImplementedError, KeyError, AttributeError) as e:
        log(f"{model.card.name}: no logit lens ({str(e).splitlines()[0]})")
    return out


def real_dla(model, log: Progress) -> dict[str, pd.DataFrame]:
    """Sublayer DLA of a real causal LM on PROMPT → TARGET (its error and the example)."""
    import torch

    from interp.attribution import dla
    from interp.report.inputs import from_dla
    try:
        tokens = torch.tensor([model.tokenizer.encode(PROMPT)])
        return from_dla(dla(model, tokens, target=TARGET, pos=-1), prompt=PROMPT, target=TARGET)
    except (ValueError, NotImplementedError, KeyError, AttributeError) as e:
        log(f"{model.card.name}: no DLA ({str(e).splitlines()[0]})")
        return {}


def equivalence_table(model, tokens: torch.Tensor) -> pd.DataFrame:
    """Max |logit difference| of the Pre-RMSNorm and Pre-CRMSNorm conversions of a Pre-LN model, in float64."""
    import copy

    import pandas as pd
    import torch

    from interp.surgery import to_crmsnorm, to_rmsnorm
    m64 = copy.deepcopy(model).double().eval()
    rows = []
    with torch.no_grad():
        ref = m64(tokens)
        for form, fn in (("pre-rmsnorm", to_rmsnorm), ("pre-crmsnorm", to_crmsnorm)):
            diff = (fn(m64)(tokens) - ref).abs().max().item()
            rows.append(dict(model=model.card.name, form=form, max_abs_diff=diff, max_abs_logit=ref.abs().max().item()))
    return pd.DataFrame(rows)


def sweep_table(sweep_dir: Path) -> pd.DataFrame | None:
    """The shipped LR sweep (data/sweep/sweep.csv written by `interp sweep`), if any."""
    import pandas as pd

    from interp.report.inputs import from_sweep
    f = sweep_dir / "sweep.csv"
    return from_sweep(pd.read_csv(f))["sweep"] if f.is_file() else None


def zoo_task(d: Path, ctx: JobContext) -> tuple[list, list, list[str]]:
    """Everything measured on one zoo model: (results, extra tables, log lines)."""
    import interp
    log = Progress(ctx.t0)
    t = time.perf_counter()
    model = interp.zoo.load(d).eval()
    log(f"{model.card.name}: loaded in {time.perf_counter() - t:.1f} s")
    from interp.analysis.subjects import seed_of
    first_seed = seed_of(d.name) == 0  # the strategy's views (precision runs, DLA, skip bars) come from seed 0; the
    # other seeds feed the claims' intervals (and the conversion check, over seeds)
    tokens, costly, extras, layer_skip = ctx.zoo_tokens, max(1, len(ctx.zoo_tokens) // 2), [], None
    subject = skip_subject(d.name) and model.card.objective == "causal_lm"
    if subject:  # per sequence; the costly pass's skip
        from interp.analysis.skip import pooled_skip_table, skip_per_sequence  # table pools its first items
        t = time.perf_counter()
        seq_skip = skip_per_sequence(model, tokens)
        extras.append({"seq_skip": seq_skip})
        layer_skip = pooled_skip_table(seq_skip, costly)
        log(f"{model.card.name}: skip-one-block loss per sequence on {tokens.numel()} tokens in "
            f"{time.perf_counter() - t:.1f} s")
    res, extra = collect_one(model, tokens, log, ctx.results_dir, batch_size=8, ablate=False,
                             costly_items=costly, layer_skip=layer_skip, skip=first_seed or subject,
                             force=ctx.force)
    extras.append(extra)
    if first_seed:
        from interp.precision.job import job_runs
        extras.append(job_runs(model, tokens[:4], log))  # bf16 / fp16 / int8 end to end, 512 tokens; logs its cost
    if model.card.objective == "mdlm":  # masked diffusion: its bound and time dependence, no next-token DLA
        from interp.report.mdlm import mdlm_tables
        extras.append(mdlm_tables(model, tokens, log, fixed_t=first_seed, source=d))
    else:
        if first_seed:
            t = time.perf_counter()
            extras.append(attribution_tables(model, tokens, log, example=model.card.name in ("pre-ln", "no-norm")))
            log(f"{model.card.name}: DLA and logit lens in {time.perf_counter() - t:.1f} s")
        if model.cfg.placement == "pre" and model.cfg.norm == "layernorm":
            t = time.perf_counter()
            extras.append({"equivalence": equivalence_table(model, tokens[:4])})
            log(f"{model.card.name}: Pre-LN → RMSNorm / CRMSNorm conversion checked in float64 in "
                f"{time.perf_counter() - t:.1f} s")
    extras += model_steps(model, ctx, log)
    return [res], extras, log.lines


def real_task(name: str, ctx: JobContext) -> tuple[list, list, list[str]]:
    """Everything measured on one packaged real model (nothing when it is not installed)."""
    import interp
    log = Progress(ctx.t0)
    try:
        t = time.perf_counter()
        model = interp.load_model(name).eval()
        log(f"{name}: loaded in {time.perf_counter() - t:.1f} s")
    except (FileNotFoundError, ImportError, ValueError, RuntimeError, OSError) as e:
        log(f"{name}: not loaded ({str(e).splitlines()[0]})")
        return [], [], log.lines
    res, extra = collect_one(model, list(ctx.texts), log, ctx.results_dir, batch_size=4, ablate=True,
                             costly_items=1, force=ctx.force)
    extras = [extra]
    from interp.precision.job import job_runs
    extras.append(job_runs(model, list(ctx.texts), log, max_tokens=256))  # bf16 / fp16 / int8 end to end; logs its cost
    if model.card.objective != "encoder":
        t = time.perf_counter()
        extras.append(real_dla(model, log))
        log(f"{name}: sublayer DLA in {time.perf_counter() - t:.1f} s")
    extras += model_steps(model, ctx, log)
    return [res], extras, log.lines


def claims_task(zoo_dir: Path, dirs: list[Path], ctx: JobContext) -> tuple[list, list, list[str]]:
    """The claims' own measurements on the zoo (step-0 gradients, timing, entropy neurons, training logs); the
    per-sequence skip losses are measured in the zoo models' own tasks (`zoo_task`), on the model already loaded."""
    from interp.report.claims.measure import claim_tables
    log = Progress(ctx.t0)
    return [], [claim_tables(zoo_dir, dirs, ctx.zoo_tokens, max(1, len(ctx.zoo_tokens) // 2), log, skips=False)], \
        log.lines


def dynamics_task(dirs: list[Path], ctx: JobContext) -> tuple[list, list, list[str]]:
    """Weights along training: growth, gradients, outliers (interp.analysis.dynamics)."""
    from interp.analysis.dynamics import training_dynamics
    log = Progress(ctx.t0)
    return [], [training_dynamics(dirs, ctx.zoo_tokens[:max(2, len(ctx.zoo_tokens) // 2)], log=log)], log.lines


def logs_task(zoo_dir: Path, ctx: JobContext) -> tuple[list, list, list[str]]:
    """The training logs and the LR sweep shipped in data/ (read, not measured), read on a worker."""
    from interp.report.inputs import from_zoo_dir
    log = Progress(ctx.t0)
    shipped = from_zoo_dir(zoo_dir)
    sweep = sweep_table(zoo_dir.parent / "sweep")
    for what, df in (("training logs", shipped.get("training")), ("LR sweep", sweep)):
        log(f"{what}: {'read from data/' if df is not None else 'not shipped in data/ — its section says so'}")
    return [], [shipped, {"sweep": sweep} if sweep is not None else {}], log.lines


# CPU seconds of each task that is not a zoo model's (measured, one thread): the tasks are handed to the workers
# longest first (a zoo model's task is ~2 s), which keeps both workers busy to the end
TASK_COST = {"qwen2.5-0.5b": 110, "gemma-3-270m": 80, "smollm2-135m": 30, "claims": 15, "mpnet-base": 12,
             "dynamics": 10, "minilm-l6": 2.5, "logs": 2}
ZOO_TASK_COST = 2.5


def task_cost(label: tuple[str, ...]) -> float:
    """Expected CPU seconds of a task: TASK_COST; a zoo model ZOO_TASK_COST, twice that for the subjects of a skip
    claim (their task also measures the skip-one-block loss per sequence)."""
    if label[0] != "zoo":
        return TASK_COST.get(label[-1], ZOO_TASK_COST)
    return ZOO_TASK_COST * (2 if skip_subject(label[1]) else 1)


def skip_subject(name: str) -> bool:
    """Whether zoo model `name` is a subject of a skip claim (its task also measures the per-sequence skip losses)."""
    from interp.analysis.subjects import group_of
    from interp.report.claims.measure import skip_groups
    return group_of(name) in skip_groups()


def longest_first(labels: list[tuple[str, ...]]) -> list[int]:
    """Indices of the task labels ("real", name) / ("claims",) / ("dynamics",) / ("logs",) / ("zoo", name) in the
    order the workers take them: by `task_cost`, longest first, ties in the given order."""
    costs = [task_cost(label) for label in labels]
    return sorted(range(len(labels)), key=lambda i: -costs[i])


def run_default(out: str | Path = "report/index.html", small: bool = False, zoo_dir: Path | None = None,
                real_models: tuple[str, ...] | None = None, force: bool = False, workers: int | None = None,
                full: bool = False) -> Path:
    """Run the main job and write the report; returns its path (printed at the end). Besides `out` it writes
    `claims.json` and `results/<model>` folders next to it. Checked before any work: an existing report at `out`
    is replaced only with `force`; a claims.json there only when it is an earlier claims table; a results folder
    only when this job wrote it, or with `force` when it is one from elsewhere (`interp collect`); anything else
    is refused (OutputRefused, one line naming it). The models are measured by `workers` processes (default:
    `job_pool.default_workers()`, INTERP_JOB_WORKERS), INTERP_THREADS threads each (default 1). The real models
    are REAL_MODELS, plus REACH_MODELS with `full`, unless `real_models` names them."""
    from interp.report.job_pool import default_workers, env_count, run_tasks, task_pool
    from interp.report.marker import check_report_target

    out = Path(out)
    check_report_target(out, force)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = default_workers() if workers is None else workers
    # one thread per worker: two threads per process fall 2-4x behind one as soon as another process competes for
    # the cores (INTERP_THREADS=2 with INTERP_JOB_WORKERS=1 suits a machine with nothing else running)
    threads = env_count("INTERP_THREADS", 1)
    import torch  # the checks above need none of these (a bad -o or environment variable fails in a moment)

    import interp
    import interp.data
    import interp.report
    from interp.report.claims.measure import check_claims_target
    from interp.report.inputs import merge_tables, result_part, tables_from_parts

    log = Progress()
    zoo_dir = Path(zoo_dir) if zoo_dir else interp.data.DATA_DIR / "zoo"
    dirs = zoo_dirs(zoo_dir)
    dirs = dirs[:3] if small else dirs
    if real_models is None:
        real_models = REAL_MODELS + (REACH_MODELS if full else ())
    reals = list(real_models[-1:] if small else real_models)
    results_dir = out.parent / "results"
    for name in [zoo_model_name(d) for d in dirs] + reals:  # what the job will write, before any work
        check_results_target(results_folder(results_dir, name), force)
    check_claims_target(out.parent / "claims.json")
    torch.set_num_threads(threads)
    n_seqs, seq_len, chars = (2, 64, 200) if small else (16, 128, 600)
    ctx = JobContext(zoo_tokens=interp.data.heldout_tokens(n_seqs, seq_len),
                     texts=tuple(interp.data.heldout_texts(n_seqs // 2 if not small else 2, chars)),
                     results_dir=results_dir, t0=log.t0, small=small, force=force)
    log(f"held-out sample: {tuple(ctx.zoo_tokens.shape)} zoo tokens, {len(ctx.texts)} passages of ~{chars} chars "
        "for real models")
    if not dirs:
        log(f"no trained zoo in {zoo_dir}: run `interp train --zoo`; the zoo sections will say so")
    labelled = ([(("real", n), (real_task, (n, ctx))) for n in reals]
                + [(("claims",), (claims_task, (zoo_dir, dirs, ctx)))]
                + [(("dynamics",), (dynamics_task, (dirs, ctx)))]
                + [(("logs",), (logs_task, (zoo_dir, ctx)))]
                + [(("zoo", d.name), (zoo_task, (d, ctx))) for d in dirs])
    # longest first (stable: zoo models in name order); results still come back in this list's order
    order = longest_first([label for label, _ in labelled])
    log(f"{len(labelled)} tasks ({len(reals)} real models: {', '.join(reals) or 'none'}; {len(dirs)} zoo models; "
        f"the claims' measurements; training dynamics; the shipped logs) on "
        f"{workers} worker process(es), {threads} thread(s) each")
    lines: list[str] = []
    parts: dict[tuple, list] = {}  # task label -> its results' canonical tables

    def finished(i: int, value, cpu: float) -> None:
        parts[labelled[i][0]] = [result_part(r) for r in value[0]]  # the adapters' work, done while the other tasks run
        lines.extend(value[2])
        line = f"[{time.time() - log.t0:6.1f} s] task {' '.join(map(str, labelled[i][0]))}: {cpu:.1f} s CPU"
        say(line)  # on stdout too: benchmarks/main_job.py reads each task's CPU seconds from it
        lines.append(line)

    with task_pool(min(workers, len(labelled)), threads) as pool:
        done = run_tasks([labelled[i][1] for i in order], workers, threads=threads, pool=pool,
                         on_done=lambda j, value, cpu: finished(order[j], value, cpu))
        by = {labelled[i][0]: value for i, value in zip(order, done)}
        keys = ([("zoo", d.name) for d in dirs] + [("real", n) for n in reals] + [("claims",), ("dynamics",),
                                                                                   ("logs",)])
        ordered = [by[k] for k in keys]
        results = [r for value in ordered for r in value[0]]
        extras = [e for value in ordered for e in value[1]]
        log.lines = sorted(log.lines + lines, key=lambda x: float(x[1:x.index(" s]")]))
        extra_tables = merge_tables(*extras)  # the logs task's extras included: shipped training logs, LR sweep
        t = time.perf_counter()
        tables = merge_tables(tables_from_parts(p for k in keys for p in parts[k]), extra_tables)
        if "cards" not in tables:
            raise RuntimeError("no model could be collected: no zoo in data/zoo and no packaged real model loaded")
        from interp.outputs import atomic_write_text
        from interp.report.claims.measure import ln_removal_measured, write_claims
        tables.update(ln_removal_measured(tables))  # CE of pre-ln / -vanilla / -lnfree on this run's held-out tokens
        claims_file = out.parent / "claims.json"
        # written under a fresh hidden name and renamed once the report is: a failed render leaves the earlier
        # report and claims.json as they were, a pair
        pending = out.parent / f".claims-{os.getpid()}-{time.time_ns()}.json"
        try:
            if pool is not None:  # the claims are evaluated on a worker while this process renders the rest
                claims = pool.submit(write_claims, tables, pending).result
                log(f"claims: evaluated on a worker while the report renders ({claims_file})")
            else:
                claims = write_claims(tables, pending)
                log(f"claims evaluated in {time.perf_counter() - t:.1f} s: {claims_file}")
            path = atomic_write_text(out, interp.report.render_html(
                tables, sources=[f"{len(results)} models measured in this run"], run_log=log.lines, claims=claims,
                pool=pool))  # the other worker builds some of the sections meanwhile
            if callable(claims):
                claims()  # the worker's file is complete before it is renamed
            os.replace(pending, claims_file)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)  # a claims task still running must not write after the clean-up
            pending.unlink(missing_ok=True)
    size = path.stat().st_size / 1e6
    log(f"report written in {time.perf_counter() - t:.1f} s: {size:.1f} MB")
    import resource
    ru, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"main job done in {time.time() - log.t0:.0f} s wall, "
          f"{ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime:.0f} s CPU (this process and its workers; "
          f"peak RSS {max(ru.ru_maxrss, ch.ru_maxrss) / 1e6:.1f} GB per process); report: {path.resolve()}")
    return path
