"""LN removal as a zoo job: each trained pre-ln seed gives an LN-free model and its two vanilla controls.

For seed k of pre-ln (data/zoo/pre-ln[.seedK]) it writes, with the same fine-tuning budget (the LN-free GPT-2
recipe: staged FakeLN freezing, `STEPS_PER_STAGE` updates after each of the 5 stages):
  pre-ln-lnfree[.seedK]          every LayerNorm removed (a no-norm zoo model after folding), + removal.json
  pre-ln-vanilla[.seedK]         the matched control: the same fine-tuning calls with every LayerNorm kept
  pre-ln-vanilla-single[.seedK]  one fine-tuning run of the same total length (one warm-up + cosine)
Two controls, because the paper's effect (LN-free − vanilla CE) is only meaningful when the controls agree
with each other better than the effect is large; the report measures all three on held-out tokens.
Every seed reads the same calibration windows and fine-tuning shuffles (remove_layernorm's and
default_finetune's seed 0, as the shipped seeds were made): seed k differs from seed 0 only in its source model,
so the seed spread of the LN-free effect leaves out the data order's share.
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import torch

from interp.outputs import json_safe

LNFREE, VANILLA, SINGLE = "pre-ln-lnfree", "pre-ln-vanilla", "pre-ln-vanilla-single"
SOURCE = "pre-ln"
STEPS_PER_STAGE, LR, BATCH = 100, 1e-3, 8


def names(seed: int) -> dict[str, str]:
    from interp.train.zoo import model_name
    return {k: model_name(k, seed) for k in (SOURCE, LNFREE, VANILLA, SINGLE)}


def recipe() -> dict:
    return {"steps_per_stage": STEPS_PER_STAGE, "lr": LR, "batch_size": BATCH, "stages": 5,
            "calibration": "4 training batches per stage", "eval": "heldout_tokens(16, 129)"}


def is_done(out: Path, seed: int) -> bool:
    """All three models of this seed exist with the current recipe and were made from the source's current trained
    weights (its init alone would pass a source retrained with other steps: same seed, same init)."""
    n, source_sha = names(seed), None
    for k in (LNFREE, VANILLA, SINGLE):
        p = Path(out) / n[k] / "config.json"
        if not p.is_file():
            return False
        t = json.loads(p.read_text()).get("training", {})
        if t.get("status") != "done" or t.get("recipe") != recipe() or t.get("seed") != seed:
            return False
        src = Path(out) / n[SOURCE] / "config.json"
        if t.get("source_init_sha256") != json.loads(src.read_text()).get("training", {}).get("init_sha256"):
            return False
        if source_sha is None:
            from interp.train.zoo import state_sha256
            from interp.zoo import load
            source_sha = state_sha256(load(src.parent))
        if t.get("source_sha256") != source_sha:
            return False
    return True


def run(out: Path, seed: int, data) -> dict:
    """Remove LN from pre-ln seed `seed` and fine-tune both controls; write the three models; their CE record."""
    from interp.data import heldout_tokens
    from interp.outputs import check_dir_target
    from interp.surgery import remove_layernorm
    from interp.surgery.remove_ln import default_finetune, lm_ce
    from interp.train.zoo import _cpu_s, state_sha256
    from interp.zoo import load
    out, n = Path(out), names(seed)
    for key in (LNFREE, VANILLA, SINGLE):  # each an earlier checkpoint of this job or nothing: refused before work
        check_dir_target(out / n[key], "checkpoint", force=True)
    src_dir = out / n[SOURCE]
    source = load(src_dir)
    src_training = json.loads((src_dir / "config.json").read_text())["training"]
    eval_tokens = heldout_tokens(16, 129)
    t0, c0 = time.time(), _cpu_s()
    torch.manual_seed(seed)  # no draw reads it: each fine-tune seeds its own Trainer (see the module docstring)
    r = remove_layernorm(source, data.train_tokens, eval_tokens, steps_per_stage=STEPS_PER_STAGE,
                         batch_size=BATCH, lr=LR, control="matched")
    single = copy.deepcopy(source)
    default_finetune(data.train_tokens, lr=LR, batch_size=BATCH, seq_len=128)(single, 5 * STEPS_PER_STAGE, 5)
    ce = {**r.ce, "vanilla_single": lm_ce(single, eval_tokens)}
    ce["lnfree_minus_vanilla_single"] = ce["lnfree"] - ce["vanilla_single"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
    wall, cpu = time.time() - t0, _cpu_s() - c0
    for key, model in ((LNFREE, r.model), (VANILLA, r.control), (SINGLE, single)):
        model.cfg.strategy = key
        model.tokenizer = source.tokenizer
        model.weight_source = f"interp zoo: {n[SOURCE]} -> {key}"
        rec = {"strategy": key, "seed": seed, "objective": "causal_lm", "status": "done", "source": n[SOURCE],
               "source_init_sha256": src_training.get("init_sha256"), "source_sha256": state_sha256(source),
               "recipe": recipe(), "steps": 5 * STEPS_PER_STAGE, "tokens": 5 * STEPS_PER_STAGE * BATCH * 128,
               "final_val_loss": ce["lnfree" if key == LNFREE else "vanilla" if key == VANILLA else "vanilla_single"],
               "ce_at_training": ce, "job_wall_s": round(wall, 1), "job_cpu_s": round(cpu, 1) if key == LNFREE else 0.0,
               "started_at": started, "finished_at": now, "n_params": sum(p.numel() for p in model.parameters())}
        _install(out / n[key], model, rec, None if key != LNFREE else json.dumps(json_safe(
            {"source": n[SOURCE], "ce": ce, "stages": r.stages.to_dict("records"), **recipe(),
             "eval_tokens": int(eval_tokens[:, 1:].numel()),
             "paper_gpt2_small": {"vanilla": 3.0126, "lnfree": 3.0797, "lnfree_minus_vanilla": 0.0671}}),
            indent=2, allow_nan=False).encode())
    return {"ce": ce, "wall_s": wall, "cpu_s": cpu}


def _install(dest: Path, model, rec: dict, removal: bytes | None) -> None:
    """Write `model` (and removal.json) into a fresh temp folder beside `dest`, then swap it in through
    interp.outputs.install_dir: `dest` is replaced only when it is an earlier zoo checkpoint (else OutputRefused)."""
    from interp.outputs import atomic_write_bytes, install_dir, temp_dir
    tmp = temp_dir(dest)
    try:
        model.save(tmp, extra={"training": rec})
        if removal is not None:
            atomic_write_bytes(tmp / "removal.json", removal)
        install_dir(tmp, dest, "checkpoint", force=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temp folder, never a user's
        raise
