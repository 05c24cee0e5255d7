"""The zoo recipe: every strategy at one shared size and token budget, several seeds, trained on the KJV.

`train_one()` trains one (strategy, seed) and writes data/zoo/<name>/ (name = strategy for seed 0,
`<strategy>.seed<k>` otherwise) = model.save() output (model.safetensors, config.json with the training record,
tokenizer.json) + steps.parquet + layers.parquet (+ checkpoints/step-<N>.safetensors along training for the
strategies in SHIP_SNAPSHOTS). Training state (optimizer, RNG) lives in `out/zoo-runs/<name>/` so a killed
run resumes where it stopped. The job queue over (strategy, seed) and the manifest live in
`interp.train.zoo_runner`. One shared recipe (`zoo_train_config`) for all, except the strategies in
ZOO_EXCEPTIONS, which the shared recipe fails to train; the manifest records their config and the reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import shutil
import time
from pathlib import Path

import torch

from interp.data import DATA_DIR, Prepared, TokenBatches
from interp.train.trainer import TrainConfig, Trainer, lm_loss
from interp.zoo import build

ZOO_SIZE = dict(n_layers=12, d_model=64, n_heads=4, d_mlp=256, n_ctx=128, d_vocab=4096)
ZOO_STEPS = 2000           # × 8 × 128 tokens = 2.05 M tokens per model
ZOO_DIR = DATA_DIR / "zoo"
# Runs at least this long compile their training step (interp.train.fast): compiling costs ~20-40 CPU s cold,
# repaid by the cheaper step only over hundreds of steps.
COMPILE_MIN_STEPS = 500
# Fractions of the run whose weights are kept (step 0 is rebuilt from the seed; the last is the model itself).
SNAPSHOT_FRACTIONS = (0.0, 0.1, 0.3, 1.0)
# Strategies whose seed-0 snapshots are shipped in data/zoo/<name>/checkpoints/ (the training-dynamics view of
# the Peri-LN, Curse-of-Depth and Mix-LN papers); other runs keep theirs in out/zoo-runs only.
SHIP_SNAPSHOTS = ("pre-ln", "post-ln", "peri-ln", "mix-ln", "lns")
# Strategies the shared recipe fails to train, with what we ran instead and why (recorded in the manifest).
ZOO_EXCEPTIONS: dict[str, dict] = {
    "dyt": {"model_kwargs": {"unembed_bias": True}, "unembed_bias_init": "log_unigram",
            "why": "with the shared recipe DyT collapses in the first ~10 steps: the cheapest way to emit the unigram "
                   "prior through a bounded final DyT (|y| <= gamma) is to saturate it, so the stream becomes one "
                   "token-independent vector and validation loss stays on the unigram plateau (6.02 at step 400 of "
                   "the 2000-step recipe vs pre-ln well below). An unembedding bias b_U initialised to the log "
                   "unigram frequencies of the training tokens gives the prior for free; the DyT layers themselves "
                   "are unchanged (every norm incl. the final one is DyT, alpha init 0.5). Not the DyT paper's "
                   "recipe: an output-bias prior init, a per-model exception"},
}
# Attempts and probes kept on record (manifest "notes").
ZOO_NOTES: dict[str, str] = {
    "post-ln": ("Post-LN trains with the shared recipe at 2000 steps (warm-up 200): a probe reached validation loss "
                "4.89 at step 400 (6.13 at step 100, the plateau it left by step 300). The 400-step recipe of the "
                "first zoo (warm-up 40) kept it on the unigram plateau, which needed lr 5e-4 there."),
    "dyt": ("With the shared recipe DyT stays on the unigram plateau (probe: validation loss 6.11 / 6.06 / 6.04 / 6.02 at "
            "steps 100-400). Earlier 150-step probes: lr 5e-4 / warm-up 100, alpha_init 5 / 0.1 / 0.05, init_std 0.2, "
            "the paper's LLaMA per-role alpha init, a learnable scalar after the embedding, bias=False, untied "
            "unembedding, zero-init b_U, frozen betas: all ~6.0. Cause: at init DyT passes alpha*x (x ~ 0.03) so "
            "blocks are ~inert and within ~10 steps the stream becomes one token-independent vector that saturates "
            "every DyT; the bounded final DyT reaches the unigram prior only when saturated. b_U initialised to log "
            "unigram frequencies removes that pull. The same b_U init also helps pre-ln, so DyT gets a head start "
            "the other zoo models lack."),
    "unified-norm": ("Gradient compensation (the ratio r of batch to running scale) switches on after max(1000, "
                     "warm-up) iterations as in the authors' UN1d: at 2000 steps it acts for the second half of "
                     "the run. Outlier filtration (off for NLP in the authors' code) is not implemented."),
    "padding": ("Batch-statistic norms take their statistics and backward means over real tokens only; the authors' "
                "code averages over every position. The zoo trains on unpadded windows, where the two agree."),
}


def model_name(strategy: str, seed: int) -> str:
    """The zoo directory / card name of (strategy, seed): the strategy for seed 0, `<strategy>.seed<k>` else."""
    from interp.zoo.io import seed_name
    return seed_name(strategy, seed)


def zoo_train_config(steps: int = ZOO_STEPS, lr: float = 2e-3, seed: int = 0, warmup: int | None = None) -> TrainConfig:
    """The shared recipe: batch 8 × 128 tokens, AdamW (0.9, 0.95), wd 0.1, warm-up 10 %, cosine to 10 %."""
    warmup = max(1, steps // 10) if warmup is None else warmup
    return TrainConfig(steps=steps, batch_size=8, seq_len=ZOO_SIZE["n_ctx"], lr=lr, warmup=warmup,
                       min_lr_ratio=0.1, weight_decay=0.1, betas=(0.9, 0.95), clip=1.0, seed=seed,
                       eval_every=max(1, steps // 5), eval_batches=16, ckpt_every=max(1, steps // 8))


def zoo_norm_kwargs(strategy: str, steps: int, warmup: int | None = None) -> dict:
    """Batch-statistic norms warm their statistics up over the LR warm-up (default 10 % of `steps`), as the
    authors' runs tie the two (PowerNorm's group_num = n_heads comes from the preset)."""
    if strategy in ("powernorm", "unified-norm"):
        return {"warmup_iters": max(1, steps // 10) if warmup is None else warmup}
    return {}


def build_zoo_model(strategy: str, seed: int, size: dict, train_tokens: torch.Tensor, norm_kwargs: dict | None = None,
                    exception: dict | None = None) -> torch.nn.Module:
    """`strategy` at init `seed` as the zoo trains it (the zoo runner and the LR sweep alike): `norm_kwargs` to its
    norms, and its ZOO_EXCEPTIONS entry's model side: `model_kwargs` go to `build`; unembed_bias_init="log_unigram"
    sets b_U to the add-one smoothed log unigram frequencies of `train_tokens` (needs unembed_bias=True)."""
    exception = exception or {}
    model_kwargs, unembed_bias_init = exception.get("model_kwargs"), exception.get("unembed_bias_init")
    model = build(strategy, seed=seed, **size, **(model_kwargs or {}),
                  **({"norm_kwargs": norm_kwargs} if norm_kwargs else {}))
    if unembed_bias_init is not None:
        if unembed_bias_init != "log_unigram" or model.unembed.bias is None:
            raise ValueError(f"unembed_bias_init={unembed_bias_init!r} needs 'log_unigram' and unembed_bias=True")
        counts = torch.bincount(train_tokens.flatten().long(), minlength=model.cfg.d_vocab).double() + 1
        with torch.no_grad():
            model.unembed.bias.copy_((counts / counts.sum()).log().to(model.unembed.bias.dtype))
    return model


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over a model's state dict (names, dtypes, shapes, bytes in name order): identifies weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        v = v.detach().contiguous().cpu()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _write_json(path: Path, obj: dict) -> None:
    from interp.outputs import atomic_write_bytes
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def _loss_fn(model):
    """Next-token cross-entropy, or the masked-diffusion bound for `objective="mdlm"` presets."""
    if getattr(model.cfg, "objective", "causal_lm") == "mdlm":
        from interp.train.mdlm import mdlm_loss
        return mdlm_loss
    return lm_loss


def train_one(strategy: str, data: Prepared, cfg: TrainConfig, out_dir: Path, run_dir: Path,
              size: dict | None = None, seed: int = 0, progress: bool = True, norm_kwargs: dict | None = None,
              exception: dict | None = None, ship_snapshots: bool = False, compile: bool | None = None) -> dict:
    """Train one strategy from init `seed` (resuming `run_dir` if it holds a checkpoint), save it to `out_dir`.

    `cfg.seed` orders the data; the zoo uses the same value for both. `exception` is a ZOO_EXCEPTIONS entry
    (its model side applied by `build_zoo_model`). `compile`: compile the training step
    where valid (interp.train.fast; same math, float32 rounding aside); None: for runs of at least
    COMPILE_MIN_STEPS steps, unless INTERP_COMPILE=0.
    Returns the training record (also saved in config.json)."""
    from interp.outputs import check_dir_target
    check_dir_target(out_dir, "checkpoint", force=True)  # an earlier zoo checkpoint or nothing: refused before training
    exception = exception or {}
    size = {**ZOO_SIZE, **(size or {}), "d_vocab": getattr(data.tokenizer, "vocab_size", ZOO_SIZE["d_vocab"])}
    nk = {**zoo_norm_kwargs(strategy, cfg.steps, cfg.warmup), **(norm_kwargs or {})}
    model = build_zoo_model(strategy, seed, size, data.train_tokens, nk, exception)
    model.tokenizer = data.tokenizer
    init_sha = state_sha256(model)
    bos = data.tokenizer.bos_id
    train = TokenBatches(data.train_tokens, cfg.seq_len, cfg.batch_size, bos, seed=cfg.seed)
    val = TokenBatches(data.val_tokens, cfg.seq_len, cfg.batch_size, bos, shuffle=False)
    meta = {"strategy": strategy, "seed": seed, "corpus_sha256": data.corpus.hash,
            "tokenizer_sha256": data.tokenizer_sha256}
    snaps = sorted({round(f * cfg.steps) for f in SNAPSHOT_FRACTIONS})
    t0, c0 = time.time(), _cpu_s()
    trainer = Trainer(model, train, cfg, val=val, run_dir=run_dir, meta=meta, progress=progress,
                      desc=model_name(strategy, seed), loss_fn=_loss_fn(model), snapshots=snaps,
                      compile=_compile_default(cfg.steps) if compile is None else compile)
    res = trainer.run()
    cost = _add_cost(run_dir, time.time() - t0, _cpu_s() - c0)
    shipped = [s for s in snaps if 0 < s < cfg.steps] if ship_snapshots else []
    rec = {"strategy": strategy, "seed": seed, "objective": getattr(model.cfg, "objective", "causal_lm"),
           "status": res.status, "message": res.message, "steps": res.step,
           "tokens": res.step * cfg.batch_size * cfg.seq_len, "final_val_loss": res.final_val_loss,
           "final_train_loss": float(res.steps.loss.tail(20).mean()) if len(res.steps) else None,
           "loss_spikes": int(res.steps.spike.sum()) if len(res.steps) else 0,
           "train_wall_s": round(res.wall_s, 1), "job_wall_s": round(cost["wall_s"], 1),
           "job_cpu_s": round(cost["cpu_s"], 1), "started_at": cost["started_at"], "finished_at": cost["finished_at"],
           "fast_step": {"fused_adamw": bool(trainer.opt.defaults.get("fused")),
                         "compiled": trainer.train_loss.compiled},
           "norm_kwargs": nk, "n_params": sum(p.numel() for p in model.parameters()), "evals": res.evals,
           "train_config": cfg.to_dict(), "init_sha256": init_sha,
           "checkpoints": [{"step": s, "tokens": s * cfg.batch_size * cfg.seq_len,
                            "where": ("rebuilt from the seed (interp.zoo.build)" if s == 0 else
                                      "model.safetensors" if s == cfg.steps else
                                      f"checkpoints/step-{s:06d}.safetensors" if s in shipped else
                                      f"{run_dir}/snapshots (not shipped)")} for s in snaps]}
    if exception:
        rec["exception_reason"] = exception["why"]
        rec["differs_from_shared_recipe"] = {k: v for k, v in exception.items() if k != "why"}
    if res.status == "done":
        from interp.outputs import install_dir, temp_dir
        tmp = temp_dir(out_dir)  # its own name: another process may be writing this model too
        try:
            model.weight_source = f"interp zoo: {strategy} seed {seed}, {res.step} steps on {data.corpus.name}"
            model.save(tmp, extra={"training": {**rec, "config": cfg.to_dict(), **meta}})
            for f in ("steps.parquet", "layers.parquet"):
                shutil.copy(run_dir / f, tmp / f)
            for s in shipped:
                (tmp / "checkpoints").mkdir(exist_ok=True)
                shutil.copy(trainer.snapshot_path(s), tmp / "checkpoints" / f"step-{s:06d}.safetensors")
            install_dir(tmp, out_dir, "checkpoint", force=True)  # the old model moved aside, deleted after the swap
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # our own temp folder, never a user's
            raise
    return rec


def _compile_default(steps: int) -> bool:
    return steps >= COMPILE_MIN_STEPS and os.environ.get("INTERP_COMPILE", "1") != "0"


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _add_cost(run_dir: Path, wall_s: float, cpu_s: float) -> dict:
    """Accumulate this call's wall and CPU seconds in run_dir/cost.json (a resumed run adds up its calls)."""
    p = Path(run_dir) / "cost.json"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    c = json.loads(p.read_text()) if p.is_file() else {"wall_s": 0.0, "cpu_s": 0.0, "calls": 0,
                                                        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                    time.gmtime(time.time() - wall_s))}
    c.update(wall_s=c["wall_s"] + wall_s, cpu_s=c["cpu_s"] + cpu_s, calls=c["calls"] + 1, finished_at=now)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    _write_json(p, c)
    return c


def exception_config(strategy: str, cfg: TrainConfig) -> tuple[TrainConfig, dict | None]:
    """(the config `strategy` trains with, its ZOO_EXCEPTIONS entry or None)."""
    exc = ZOO_EXCEPTIONS.get(strategy)
    if not exc:
        return cfg, None
    return dataclasses.replace(cfg, **{k: exc[k] for k in ("lr", "warmup") if k in exc}), exc


def zoo_table(manifest: dict | str | Path = ZOO_DIR / "manifest.json"):
    """The shipped zoo at a glance, one row per model: model, strategy, seed, objective, val_loss, train_loss
    (last 20 steps), unigram_xent (validation cross-entropy of the training unigram), below_unigram
    (= unigram_xent − val_loss, nats/token; causal LMs only), loss_spikes, steps, tokens, train_wall_s,
    job_cpu_s, lr, warmup, recipe ("shared", "exception", or "from <source>" for a model fine-tuned from
    another zoo model: LN removal and its controls, whose lr is the removal recipe's)."""
    import pandas as pd
    m = manifest if isinstance(manifest, dict) else json.loads(Path(manifest).read_text())
    base = m["baselines_nats_per_token"]["unigram_xent_val"]
    rows = []
    for name, r in m["models"].items():
        derived = "source" in r  # fine-tuned from another zoo model (LN removal and its controls): its own recipe
        cfg = r.get("recipe", {}) if derived else r.get("train_config", m["train_config"])
        causal = r.get("objective", "causal_lm") == "causal_lm"
        v = r["final_val_loss"]
        recipe = ("from " + r["source"] if derived else
                  "exception" if r.get("differs_from_shared_recipe") else "shared")
        rows.append(dict(model=name, strategy=r["strategy"], seed=r.get("seed", 0), objective=r.get("objective",
                         "causal_lm"), val_loss=v, train_loss=r.get("final_train_loss"), unigram_xent=base,
                         below_unigram=base - v if (v is not None and causal) else None,
                         loss_spikes=r.get("loss_spikes"), steps=r["steps"], tokens=r["tokens"],
                         train_wall_s=r.get("train_wall_s"), job_cpu_s=r.get("job_cpu_s"), lr=cfg.get("lr"),
                         warmup=cfg.get("warmup"), recipe=recipe))
    return pd.DataFrame(rows)
