"""What the claims need beyond the main job's collectors, measured in the report run (small, batched samples):

  grads_init   per-block gradient norms of the step-0 weights of every seed of INIT_STRATEGIES
               (`interp.zoo.load(dir, step=0)`: the trainer's own initialisation, checked against the recorded
               init hash; `interp.zoo.build(strategy, seed=k, **size)` for a zoo without training records), on
               the same held-out sequences as the trained models' gradient pass
  timing       inference forwards interleaved in one process: Pre-LN vs its Pre-RMSNorm / Pre-CRMSNorm
               conversions; Unified Norm folded into the next linear layers vs Pre-LN
  entropy_neurons  the original pre-ln's entropy-neuron candidates measured in it, in its LN-free model and in
               the vanilla control, per seed (`interp.analysis.entropy_neurons`)
  log_spikes, log_bstat   gradient spikes and batch-statistic fluctuation from the shipped training logs
  log_steadiness          running / divisor statistics' step changes beside the batch statistics' (same logs)
  seed_plan    how many seeds of each zoo strategy the zoo's manifest plans (`seeds`), so a verdict can wait for
               seeds that are still training (`interp.report.claims.evaluate`)
  seq_skip     skip-one-block loss per held-out sequence (`interp.analysis.skip`) of every seed of the strategies
               the skip_deep_shallow claims name (subjects and references); the main job measures it in each
               zoo model's own task instead (`claim_tables(..., skips=False)`)
The seq_stats collector (`interp.analysis.sequences.SequenceStats`) rides the main forward pass; the
per-sequence massive-activation ablation replaces the pooled one (`interp.analysis.ablation`).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

INIT_STRATEGIES = ("pre-ln", "post-ln", "peri-ln", "mix-ln", "lns")
ROUNDS = 15  # interleaved timing rounds of one forward each (the bootstrap over rounds gives the interval)


def _config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())["config"]


def grads_at_init(dirs: list[Path], tokens: torch.Tensor, batch_size: int = 8) -> pd.DataFrame:
    """grads_init rows (model, layer, target, grad_norm) for the step-0 model of each zoo dir in INIT_STRATEGIES."""
    import interp.collectors as C
    import interp.zoo
    from interp.analysis.subjects import group_of, seed_of
    from interp.collectors.grads import GradNorms
    from interp.report.inputs import ADAPTERS
    frames = []
    for d in dirs:
        cfg = _config(d)
        strategy = cfg.get("strategy", "")
        if group_of(d.name) not in INIT_STRATEGIES or strategy not in interp.zoo.STRATEGIES:
            continue
        try:   # the seed's initialisation as training built it, checked against the recorded init hash
            model = interp.zoo.load(d, step=0)
        except ValueError:  # no training record (an older zoo): rebuild from the seed in the name
            size = {k: v for k, v in cfg.items() if k != "strategy"}
            model = interp.zoo.build(strategy, seed=seed_of(d.name), **size).eval()
        res = C.collect(model, tokens, collectors=[GradNorms()], batch_size=batch_size, progress=False)
        g = ADAPTERS["grad_norms"](res.tables["grad_norms"], model.card)["gradients"]
        frames.append(g.assign(model=d.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def inference_timing(dirs: list[Path], tokens: torch.Tensor) -> pd.DataFrame:
    """timing rows: (model, variant, round, seconds) for the pre-ln and unified-norm seed-0 models present."""
    import interp.zoo
    from interp.analysis.timing import forward_timing
    from interp.surgery import to_crmsnorm, to_rmsnorm
    from interp.surgery.fuse_unified import fuse_unified
    by = {d.name: d for d in dirs}
    out = []
    if "pre-ln" in by:
        pre = interp.zoo.load(by["pre-ln"]).eval()
        out.append(forward_timing("pre-ln", {"pre-ln": pre, "pre-rmsnorm": to_rmsnorm(pre),
                                             "pre-crmsnorm": to_crmsnorm(pre)}, tokens, ROUNDS, 1))
        if "unified-norm" in by:
            un = interp.zoo.load(by["unified-norm"]).eval()
            out.append(forward_timing("unified-norm", {"unified-fused": fuse_unified(un), "pre-ln": pre}, tokens,
                                      ROUNDS, 1))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def entropy_neurons(dirs: list[Path], tokens: torch.Tensor) -> pd.DataFrame:
    """entropy_neurons rows for every seed with pre-ln, pre-ln-lnfree and pre-ln-vanilla checkpoints."""
    import interp.zoo
    from interp.analysis.entropy_neurons import entropy_neuron_table
    by = {d.name: d for d in dirs}
    frames = []
    for name in sorted(n for n in by if n.split(".seed")[0] == "pre-ln-lnfree"):
        suffix = name[len("pre-ln-lnfree"):]
        roles = {"original": "pre-ln" + suffix, "lnfree": name, "vanilla": "pre-ln-vanilla" + suffix}
        if all(n in by for n in roles.values()):
            frames.append(entropy_neuron_table({r: (n, interp.zoo.load(by[n]).double()) for r, n in roles.items()},
                                               tokens))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def seed_plan(zoo_dir: Path) -> pd.DataFrame:
    """seed_plan rows (model = strategy, seeds = planned) from the zoo's manifest; empty without a manifest."""
    f = Path(zoo_dir) / "manifest.json"
    if not f.is_file():
        return pd.DataFrame()
    plan = json.loads(f.read_text(encoding="utf-8")).get("seeds") or {}
    return pd.DataFrame([{"model": k, "seeds": int(v)} for k, v in plan.items()])


def skip_groups() -> set[str]:
    """The zoo strategies a skip_deep_shallow claim names, as subject or reference."""
    from interp.report.claims import CLAIMS
    return {g for c in CLAIMS.values() if c.metric == "skip_deep_shallow"
            for g in c.zoo + ((c.reference,) if c.reference else ())}


def skips_per_sequence(dirs: list[Path], tokens: torch.Tensor) -> pd.DataFrame:
    """seq_skip rows for every zoo model whose strategy a skip claim names."""
    import interp.zoo
    from interp.analysis.skip import skip_per_sequence
    from interp.analysis.subjects import group_of
    groups = skip_groups()
    frames = [skip_per_sequence(interp.zoo.load(d).eval(), tokens) for d in dirs if group_of(d.name) in groups]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def claim_tables(zoo_dir: Path, dirs: list[Path], tokens: torch.Tensor, grad_items: int,
                 log: Callable[[str], None], skips: bool = True) -> dict[str, pd.DataFrame]:
    """Every table of the module docstring that can be measured here; each step logs what it did. skips=False
    leaves seq_skip out (the main job measures it in each zoo model's own task)."""
    from interp.analysis.training_logs import read_logs
    out: dict[str, pd.DataFrame] = {}
    plan = seed_plan(zoo_dir)
    if not plan.empty:
        out["seed_plan"] = plan
    t = time.perf_counter()
    g = grads_at_init(dirs, tokens[:grad_items])
    if not g.empty:
        out["grads_init"] = g
    log(f"claims: step-0 gradient norms of {g['model'].nunique() if not g.empty else 0} models in "
        f"{time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    tm = inference_timing(dirs, tokens[:4])
    if not tm.empty:
        out["timing"] = tm
    log(f"claims: inference timing ({tm['variant'].nunique() if not tm.empty else 0} variants, interleaved) in "
        f"{time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    en = entropy_neurons(dirs, tokens[:4])
    if not en.empty:
        out["entropy_neurons"] = en
    log(f"claims: entropy neurons of {en['model'].nunique() if not en.empty else 0} LN-removal models in "
        f"{time.perf_counter() - t:.1f} s")
    if skips:
        t = time.perf_counter()
        sk = skips_per_sequence(dirs, tokens)
        if not sk.empty:
            out["seq_skip"] = sk
        log(f"claims: skip-one-block loss per sequence of {sk['model'].nunique() if not sk.empty else 0} models in "
            f"{time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    out.update(read_logs(zoo_dir, [d.name for d in dirs]))
    log(f"claims: gradient spikes and batch-statistic fluctuation read from the training logs in "
        f"{time.perf_counter() - t:.1f} s")
    return out


def ln_removal_measured(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """{"ln_removal": CE of pre-ln, pre-ln-vanilla and pre-ln-lnfree per seed}, from the held-out losses measured
    in this run (seq_loss); {} when the LN-free model or its vanilla control was not measured."""
    from interp.analysis.loss import pooled_ce
    from interp.analysis.subjects import seed_of
    sl = tables.get("seq_loss")
    if sl is None or sl.empty:
        return {}
    names = set(sl["model"])
    rows = []
    for m in sorted(n for n in names if n.split(".seed")[0] == "pre-ln-lnfree"):
        suffix = m[len("pre-ln-lnfree"):]
        van, orig = "pre-ln-vanilla" + suffix, "pre-ln" + suffix
        if van in names and orig in names:
            rows.append({"model": f"pre-ln (seed {seed_of(m)})", "ce_original": pooled_ce(tables, orig),
                             "ce_vanilla": pooled_ce(tables, van), "ce_lnfree": pooled_ce(tables, m)})
    return {"ln_removal": pd.DataFrame(rows)} if rows else {}


def is_claims_file(path: Path) -> bool:
    """Whether `path` holds a claims table as `write_claims` writes it: a non-empty JSON list of records, each with
    a claim and a verdict (what the main job may replace; any other file named claims.json is the user's)."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # non-empty: write_claims writes one row per claim and subject, so an empty list is not one of its tables
    return isinstance(rows, list) and bool(rows) and all(isinstance(r, dict) and "claim" in r and "verdict" in r
                                                         for r in rows)


def check_claims_target(path: Path) -> None:
    """May the claims table be written to `path`? Absent or an earlier claims table: yes; anything else (a user's
    file, a folder): OutputRefused, one line naming it, and nothing is touched, --force or not."""
    from interp.outputs import OutputRefused, check_file_target
    try:
        check_file_target(path, is_claims_file, "interp claims table", force=True)
    except OutputRefused as e:
        raise OutputRefused(f"{e} (the main job writes claims.json next to the report: move that file, or "
                            "choose another -o folder)") from None


def write_claims(tables: dict[str, pd.DataFrame], path: Path) -> pd.DataFrame:
    """Evaluate the claims on `tables` and write them to `path` (JSON records, atomically) for docs to render.
    A file at `path` that is not an earlier claims table is refused (`check_claims_target`), before evaluating."""
    import math

    from interp.report import write_atomic
    from interp.report.claims import evaluate
    check_claims_target(path)
    claims = evaluate(tables)
    records = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v.item() if hasattr(v, "item") else v)
                for k, v in r.items()} for r in claims.to_dict("records")]
    write_atomic(path, json.dumps(records, indent=1, ensure_ascii=False))  # full float precision (1e-15 stays)
    return claims
