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

REAL_MODELS = ("smollm2-135m", "gemma-3-270m", "minilm-l6")


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


def collectors_for(model, grads: bool = True) -> list:
    """Every collector: residual statistics, massive activations, angular distance (n = 1, 2, 4) with the
    skip-one-block loss (one extra forward per block), norm scales and, with `grads`, gradient norms."""
    from interp.collect import LayerEffect, MassiveActivations, NormScales, ResidualStats
    from interp.collect.grads import GradNorms
    return [ResidualStats(), MassiveActivations(), LayerEffect(ns=(1, 2, 4), skip=True), NormScales()] + \
        ([GradNorms()] if grads else [])


def collect_one(model, data, log: Progress, out_dir: Path | None, batch_size: int, ablate: bool) -> tuple:
    """Collect every table on `data`; for causal LMs also the massive-activation ablation. (Results, extra)."""
    import interp.collect as C
    from interp.report.inputs import from_ablation
    cols = collectors_for(model)
    t = time.perf_counter()
    try:
        res = C.collect(model, data, collectors=cols, batch_size=batch_size)
    except (ValueError, NotImplementedError, RuntimeError) as e:  # a collector that cannot run on this model
        log(f"{model.card.name}: gradient norms unavailable ({str(e).splitlines()[0]}); forward collectors only")
        cols = collectors_for(model, grads=False)
        res = C.collect(model, data, collectors=cols, batch_size=batch_size)
    log(f"{model.card.name}: collected {res.meta.get('n_tokens', '?')} tokens in {time.perf_counter() - t:.1f} s")
    extra = {}
    massive = next((c for c in cols if c.name == "massive"), None)
    if ablate and massive is not None and model.card.objective != "encoder":
        try:
            t = time.perf_counter()
            extra = from_ablation(massive.ablation(model, data, batch_size=batch_size))
            log(f"{model.card.name}: massive-activation ablation in {time.perf_counter() - t:.1f} s")
        except ValueError as e:
            log(f"{model.card.name}: no ablation ({str(e).splitlines()[0]})")
    if out_dir is not None:
        res.save(out_dir / model.card.name.replace("/", "_"))
    return res, extra


def attribution_tables(model, tokens: torch.Tensor, log: Progress) -> dict[str, pd.DataFrame]:
    """DLA (next token at the second-to-last position) and the logit lens of a zoo model, when supported."""
    from interp.attribution import dla, logit_lens
    from interp.report.inputs import from_dla, from_logit_lens
    out: dict[str, pd.DataFrame] = {}
    x = tokens[: min(4, len(tokens))]
    pos = x.shape[1] - 2
    try:
        out.update(from_dla(dla(model, x, target=x[:, pos + 1], pos=pos)))
    except (ValueError, NotImplementedError, KeyError) as e:
        log(f"{model.card.name}: no DLA ({str(e).splitlines()[0]})")
    try:
        out.update(from_logit_lens(logit_lens(model, x, target=None)))
    except (ValueError, NotImplementedError, KeyError, AttributeError) as e:
        log(f"{model.card.name}: no logit lens ({str(e).splitlines()[0]})")
    return out


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


def ln_removal_table(zoo_dir: Path) -> pd.DataFrame | None:
    """The shipped LN-removal record (data/zoo/*/removal.json written by `interp remove-ln --out`), if any."""
    import json
    for f in sorted(zoo_dir.glob("*/removal.json")):
        r = json.loads(f.read_text())
        ce = r["ce"]
        return pd.DataFrame([dict(model=Path(r.get("source", f.parent.name)).name, ce_original=ce["before"],
                                  ce_vanilla=ce["vanilla"], ce_lnfree=ce["lnfree"])])
    return None


def sweep_table(sweep_dir: Path) -> pd.DataFrame | None:
    """The shipped LR sweep (data/sweep/sweep.parquet: strategy, lr, diverged, n_spikes, final_loss), if any."""
    f = sweep_dir / "sweep.parquet"
    if not f.is_file():
        return None
    s = pd.read_parquet(f)
    return s.rename(columns={"strategy": "model"}) if "model" not in s else s


def run_default(out: str | Path = "report/index.html", small: bool = False, zoo_dir: Path | None = None,
                real_models: tuple[str, ...] = REAL_MODELS) -> Path:
    """Run the main job and write the report; returns its path (printed at the end)."""
    import interp
    import interp.data
    import interp.report
    from interp.report.inputs import from_zoo_dir, merge_tables, tables_from_results

    torch.set_num_threads(int(os.environ.get("INTERP_THREADS", os.cpu_count() or 1)))
    log = Progress()
    out = Path(out)
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
    for d in (dirs[:3] if small else dirs):
        model = interp.zoo.load(d).eval()
        res, extra = collect_one(model, zoo_tokens, log, results_dir, batch_size=8, ablate=False)
        results.append(res)
        extras += [extra, attribution_tables(model, zoo_tokens, log)]
        if model.cfg.placement == "pre" and model.cfg.norm == "layernorm":
            extras.append({"equivalence": equivalence_table(model, zoo_tokens[:4])})
            log(f"{model.card.name}: Pre-LN → RMSNorm / CRMSNorm conversion checked in float64")
    for name in (real_models[-1:] if small else real_models):
        try:
            t = time.perf_counter()
            model = interp.load_model(name).eval()
            log(f"{name}: loaded in {time.perf_counter() - t:.1f} s")
        except (FileNotFoundError, ImportError, ValueError, RuntimeError, OSError) as e:
            log(f"{name}: not loaded ({str(e).splitlines()[0]})")
            continue
        res, extra = collect_one(model, texts, log, results_dir, batch_size=4, ablate=True)
        results.append(res)
        extras.append(extra)
        del model
    shipped = from_zoo_dir(zoo_dir)
    sweep = sweep_table(zoo_dir.parent / "sweep")
    removal = ln_removal_table(zoo_dir)
    for what, df in (("training logs", shipped.get("training")), ("LR sweep", sweep), ("LN-removal record", removal)):
        log(f"{what}: {'read from data/' if df is not None else 'not shipped in data/ — its section says so'}")
    extra_tables = merge_tables(*extras, shipped, {"sweep": sweep} if sweep is not None else {},
                                {"ln_removal": removal} if removal is not None else {})
    t = time.perf_counter()
    tables = merge_tables(tables_from_results(results), extra_tables)
    if "cards" not in tables:
        raise RuntimeError("no model could be collected: no zoo in data/zoo and no packaged real model loaded")
    path = interp.report.write_atomic(out, interp.report.render(
        tables, sources=[f"{len(results)} models measured in this run"], run_log=log.lines))
    size = path.stat().st_size / 1e6
    log(f"report written in {time.perf_counter() - t:.1f} s: {size:.1f} MB")
    print(f"main job done in {time.perf_counter() - log.t0:.0f} s; report: {path.resolve()}")
    return path
