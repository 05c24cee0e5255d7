"""The main job (`make report`, `interp report --default`): collect on the shipped zoo and the packaged real
models, measure attribution and conversion on the zoo, read the training logs, and write report/index.html.

Nothing is cached by this job: every number in the report is measured in this run, on a fixed held-out
sample of the corpus (validation books), except training curves and the LR sweep, which are read from the
logs shipped with the zoo (data/zoo, data/sweep) because training is not re-run here.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import torch

REAL_MODELS = ("smollm2-135m", "gemma-3-270m", "qwen2.5-0.5b", "mpnet-base", "minilm-l6")  # small: last only


class Progress:
    """Prints each step with its elapsed time and keeps the lines for the report's "how it was made" notes."""

    def __init__(self) -> None:
        self.t0, self.lines = time.perf_counter(), []

    def __call__(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t0:6.1f} s] {msg}"
        print(line, flush=True)
        self.lines.append(line)


def zoo_dirs(zoo_dir: Path) -> list[Path]:
    """Zoo checkpoints under `zoo_dir` (each a directory written by model.save)."""
    if not zoo_dir.is_dir():
        return []
    return sorted(d for d in zoo_dir.iterdir() if (d / "config.json").is_file() and (d / "model.safetensors").is_file())


def forward_collectors() -> list:
    """One pass, every token: residual statistics, massive activations, angular distance (n = 1, 2, 4), norm
    scales, per-sequence numbers, precision safety per site."""
    from interp.analysis.sequences import SequenceStats  # per-sequence numbers: the claims' bootstrap
    from interp.collect import LayerEffect, MassiveActivations, NormScales, Precision, ResidualStats
    return [ResidualStats(), MassiveActivations(), LayerEffect(ns=(1, 2, 4), skip=False), NormScales(),
            SequenceStats(), Precision()]


def costly_collectors(grads: bool = True) -> list:
    """Costly passes, run on a subset of the sample: the skip-one-block loss (one extra forward per block) and
    gradient norms (a backward per batch)."""
    from interp.collect import LayerEffect
    from interp.collect.grads import GradNorms
    return [LayerEffect(ns=(1,), skip=True)] + ([GradNorms()] if grads else [])


def collect_one(model, data, log: Progress, out_dir: Path | None, batch_size: int, ablate: bool,
                costly_items: int) -> tuple:
    """Collect every table on `data` (the costly ones on its first `costly_items` items); for causal LMs also
    the massive-activation ablation. Returns (Results, extra canonical tables)."""
    import interp.collect as C
    from interp.analysis.ablation import ablation_per_sequence
    name = model.card.name
    from interp.collect.attn_logits import for_model as attn_logit_collectors
    cols = forward_collectors() + attn_logit_collectors(model)  # + AttnLogits where q, k are hooked
    t = time.perf_counter()
    res = C.collect(model, data, collectors=cols, batch_size=batch_size, progress=False)
    log(f"{name}: forward collectors on {res.meta.get('n_tokens', '?')} tokens in {time.perf_counter() - t:.1f} s")
    t, sub = time.perf_counter(), data[:costly_items]
    try:
        extra_res = C.collect(model, sub, collectors=costly_collectors(), batch_size=batch_size, progress=False)
    except (ValueError, NotImplementedError, RuntimeError) as e:  # a collector that cannot run on this model
        log(f"{name}: gradient norms unavailable ({str(e).splitlines()[0]})")
        extra_res = C.collect(model, sub, collectors=costly_collectors(grads=False), batch_size=batch_size,
                              progress=False)
    for k in ("layer_skip", "grad_norms"):
        if k in extra_res.tables:
            res.tables[k] = extra_res.tables[k]
    res.meta["costly_pass"] = {"items": len(sub), "n_tokens": extra_res.meta.get("n_tokens"),
                               "tables": [k for k in ("layer_skip", "grad_norms") if k in extra_res.tables]}
    log(f"{name}: skip-one-block losses + gradient norms on {extra_res.meta.get('n_tokens', '?')} tokens "
        f"in {time.perf_counter() - t:.1f} s")
    extra = {}
    massive = cols[1]
    if ablate and model.card.objective != "encoder":
        try:
            t = time.perf_counter()
            extra = ablation_per_sequence(massive, model, data, batch_size=batch_size)  # + per-sequence losses
            log(f"{name}: massive-activation ablation (none / zero / mean) in {time.perf_counter() - t:.1f} s")
        except ValueError as e:
            log(f"{name}: no ablation ({str(e).splitlines()[0]})")
    if out_dir is not None:
        res.save(out_dir / name.replace("/", "_"), force=True)  # the job's own earlier result (marked)
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
    from interp.report.inputs import from_sweep
    f = sweep_dir / "sweep.csv"
    return from_sweep(pd.read_csv(f))["sweep"] if f.is_file() else None


def run_default(out: str | Path = "report/index.html", small: bool = False, zoo_dir: Path | None = None,
                real_models: tuple[str, ...] = REAL_MODELS, force: bool = False) -> Path:
    """Run the main job and write the report; returns its path (printed at the end). An existing report at
    `out` is replaced only with `force` (checked before any work)."""
    import interp
    import interp.data
    import interp.report
    from interp.report.inputs import from_zoo_dir, merge_tables, tables_from_results
    from interp.precision.job import job_runs

    # one thread by default: measured here, two threads per process fall 2-4x behind one as soon as anything
    # else runs on the 2 cores; INTERP_THREADS=2 on an otherwise idle machine
    threads = int(os.environ.get("INTERP_THREADS", 1))
    log = Progress()
    out = Path(out)
    from interp.report.marker import check_report_target
    check_report_target(out, force)
    zoo_dir = Path(zoo_dir) if zoo_dir else interp.data.DATA_DIR / "zoo"
    results_dir = out.parent / "results"
    n_seqs, seq_len, chars = (2, 64, 200) if small else (16, 128, 600)
    zoo_tokens = interp.data.heldout_tokens(n_seqs, seq_len)
    texts = interp.data.heldout_texts(n_seqs // 2 if not small else 2, chars)
    log(f"held-out sample: {tuple(zoo_tokens.shape)} zoo tokens, {len(texts)} passages of ~{chars} chars for real models")

    results, extras = [], []
    dirs = zoo_dirs(zoo_dir)
    if not dirs:
        log(f"no trained zoo in {zoo_dir}: run `interp train --zoo`; the zoo sections will say so")
    torch.set_num_threads(1)  # zoo models are tiny (d 64): a second thread only adds overhead
    for d in (dirs[:3] if small else dirs):
        model = interp.zoo.load(d).eval()
        res, extra = collect_one(model, zoo_tokens, log, results_dir, batch_size=8, ablate=False,
                                 costly_items=max(1, len(zoo_tokens) // 2))
        results.append(res)
        extras.append(job_runs(model, zoo_tokens[:4], log))  # bf16 / fp16 / int8 end to end, 512 tokens
        if model.card.objective == "mdlm":  # masked diffusion: its bound and time dependence, no next-token DLA
            from interp.report.mdlm import mdlm_tables
            extras += [extra, mdlm_tables(model, zoo_tokens, log, fixed_t=".seed" not in d.name, source=d)]
            continue
        extras += [extra, attribution_tables(model, zoo_tokens, log, example=model.card.name in ("pre-ln", "no-norm"))]
        if model.cfg.placement == "pre" and model.cfg.norm == "layernorm":
            extras.append({"equivalence": equivalence_table(model, zoo_tokens[:4])})
            log(f"{model.card.name}: Pre-LN → RMSNorm / CRMSNorm conversion checked in float64")
    torch.set_num_threads(threads)
    for name in (real_models[-1:] if small else real_models):
        try:
            t = time.perf_counter()
            model = interp.load_model(name).eval()
            log(f"{name}: loaded in {time.perf_counter() - t:.1f} s")
        except (FileNotFoundError, ImportError, ValueError, RuntimeError, OSError) as e:
            log(f"{name}: not loaded ({str(e).splitlines()[0]})")
            continue
        res, extra = collect_one(model, texts, log, results_dir, batch_size=4, ablate=True, costly_items=1)
        results.append(res)
        extras.append(extra)
        extras.append(job_runs(model, texts, log, max_tokens=256))  # bf16 / fp16 / int8 end to end
        if model.card.objective != "encoder":
            extras.append(real_dla(model, log))
        del model
    from interp.report.claims.measure import claim_tables
    extras.append(claim_tables(zoo_dir, dirs[:3] if small else dirs, zoo_tokens, max(1, len(zoo_tokens) // 2), log))
    shipped = from_zoo_dir(zoo_dir)
    sweep = sweep_table(zoo_dir.parent / "sweep")
    for what, df in (("training logs", shipped.get("training")), ("LR sweep", sweep)):
        log(f"{what}: {'read from data/' if df is not None else 'not shipped in data/ — its section says so'}")
    extra_tables = merge_tables(*extras, shipped, {"sweep": sweep} if sweep is not None else {})
    t = time.perf_counter()
    tables = merge_tables(tables_from_results(results), extra_tables)
    if "cards" not in tables:
        raise RuntimeError("no model could be collected: no zoo in data/zoo and no packaged real model loaded")
    from interp.report.claims.measure import ln_removal_measured, write_claims
    tables.update(ln_removal_measured(tables))  # CE of pre-ln / -vanilla / -lnfree on this run's held-out tokens
    claims = write_claims(tables, out.parent / "claims.json")
    log(f"claims evaluated in {time.perf_counter() - t:.1f} s: {out.parent / 'claims.json'}")
    path = interp.report.write_atomic(out, interp.report.render(
        tables, sources=[f"{len(results)} models measured in this run"], run_log=log.lines, claims=claims))
    size = path.stat().st_size / 1e6
    log(f"report written in {time.perf_counter() - t:.1f} s: {size:.1f} MB")
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"main job done in {time.perf_counter() - log.t0:.0f} s wall, {ru.ru_utime + ru.ru_stime:.0f} s CPU "
          f"(peak RSS {ru.ru_maxrss / 1e6:.1f} GB); report: {path.resolve()}")
    return path
