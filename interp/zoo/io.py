"""Zoo checkpoints: a directory with config.json, model.safetensors and (optionally) tokenizer.json.

Loading never unpickles: weights are safetensors, config and card are JSON. A checkpoint is written in a temporary
folder and renamed into place (a crash never leaves half of one), marked as kind "checkpoint" (interp.outputs);
an existing folder is replaced only when it is an earlier checkpoint and `force` is set.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp.outputs import LEGACY, check_dir_target, install_dir, temp_dir
from interp.zoo.config import ZooConfig
from interp.zoo.model import ZooModel

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
KIND = "checkpoint"  # the marker kind of a zoo checkpoint folder
# what a zoo checkpoint folder holds (model.save, the zoo recipe, remove-ln): recognises ones from before markers
KNOWN = {WEIGHTS, CONFIG, TOKENIZER, "steps.parquet", "layers.parquet", "checkpoints", "removal.json"}


def _legacy_checkpoint(d: Path) -> bool:
    try:
        names = {e.name for e in d.iterdir()}
        meta = json.loads((d / CONFIG).read_text())
        return names <= KNOWN and WEIGHTS in names and isinstance(meta, dict) and "config" in meta
    except (OSError, ValueError):
        return False


LEGACY[KIND] = _legacy_checkpoint


def save(model: ZooModel, directory: str | Path, extra: dict | None = None, force: bool = False) -> Path:
    """Save config, weights (tied unembedding stored once) and tokenizer to the folder `directory`: new, empty,
    or (with `force`) an earlier zoo checkpoint; anything else raises OutputRefused and is left untouched."""
    d = Path(directory)
    check_dir_target(d, KIND, force)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _check_rebuildable(model.cfg, state)
    if model.cfg.tie_embeddings:  # stored once, as embed.weight: refuse to drop an unembedding that differs
        if not torch.equal(state.get("unembed.weight", state["embed.weight"]), state["embed.weight"]):
            raise ValueError("the config says tie_embeddings but unembed.weight differs from embed.weight, so saving "
                             "would drop it; set model.cfg.tie_embeddings = False to keep both")
        state.pop("unembed.weight", None)
    tmp = temp_dir(d)
    try:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "interp-zoo"})
        meta = {"config": model.cfg.to_dict(), "card": model.card.to_dict(), **(extra or {})}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2))
        tok = getattr(model, "tokenizer", None)
        if tok is not None and hasattr(tok, "to_json"):
            (tmp / TOKENIZER).write_text(tok.to_json())
        install_dir(tmp, d, KIND, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return d


def _check_rebuildable(cfg: ZooConfig, state: dict[str, torch.Tensor]) -> None:
    """`load` rebuilds the model from its config: refuse to save weights that config's model does not hold."""
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        want = ZooModel(cfg).state_dict()
    odd = sorted(set(state) ^ set(want)) + [k for k in state if k in want and state[k].shape != want[k].shape]
    if odd:
        raise ValueError(f"this model's modules differ from what its config builds ({len(odd)} tensors, e.g. "
                         f"{', '.join(odd[:3])}), so interp.zoo.load could not read it back; a model in the middle "
                         "of LN removal can be saved once interp.surgery.fold_fakeln has made it LN-free")


def seed_name(strategy: str, seed: int | None) -> str:
    """The name of a zoo model of (strategy, seed), also its folder's: the strategy for seed 0 (or none),
    `<strategy>.seed<k>` else."""
    return strategy if seed in (None, 0) else f"{strategy}.seed{seed}"


def load(directory: str | Path, dtype: torch.dtype | str = torch.float32, step: int | None = None) -> ZooModel:
    """Load a zoo checkpoint written by `save`; a missing, corrupt or truncated file raises a clear error.

    `step`: the weights after that many training updates instead of the final ones — 0 rebuilds the seed's
    initialisation, others read `checkpoints/step-<N>.safetensors` (kept for some zoo models)."""
    d = Path(directory)
    if isinstance(dtype, str):  # a name, as build takes it ("fp32", "bf16")
        from interp.device import resolve_dtype
        dtype = resolve_dtype(dtype)
    if not (d / CONFIG).is_file() or not (d / WEIGHTS).is_file():
        raise FileNotFoundError(f"{d} is not a zoo checkpoint: it needs {CONFIG} and {WEIGHTS} (written by model.save)")
    try:
        meta = json.loads((d / CONFIG).read_text(encoding="utf-8"))
        foreign = isinstance(meta, dict) and "config" not in meta
        cfg = None if foreign else ZooConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError, UnicodeError) as e:
        raise ValueError(f"{d / CONFIG} is not a valid zoo config ({e}); re-save the model") from None
    if cfg is None:
        raise ValueError(f"{d} is not a zoo checkpoint: its {CONFIG} has no 'config' object (a transformers model "
                         "folder loads with interp.load_model)")
    training = meta.get("training") or {}
    if not isinstance(training, dict):
        raise ValueError(f"{d / CONFIG}: 'training' must be an object, got {type(training).__name__}; re-save the model")
    wfile = d / WEIGHTS
    if step is not None and step != training.get("steps"):
        wfile = d / "checkpoints" / f"step-{step:06d}.safetensors"
        if step != 0 and not wfile.is_file():
            kept = sorted(int(p.stem.split("-")[1]) for p in (d / "checkpoints").glob("step-*.safetensors"))
            raise FileNotFoundError(f"{d} keeps no weights for step {step}; kept steps: 0 (the seed's init), "
                                    f"{', '.join(map(str, kept)) or 'none'} and {training.get('steps', 'the final')}")
    try:
        state = load_file(wfile) if wfile.is_file() or step != 0 else None
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{wfile} is corrupt or truncated ({e}); re-save or re-download it") from None
    tokenizer = None
    if (d / TOKENIZER).is_file():
        from interp.tokenize import load_tokenizer
        tokenizer = load_tokenizer(d / TOKENIZER)
    if state is None:  # step 0: the initialisation of the recorded seed, rebuilt exactly as training did
        state = _initial_state(cfg, training, d)
    model = ZooModel(cfg, tokenizer=tokenizer).to(dtype)  # cast first: loading copies into these tensors
    for name, m in model.named_modules():  # earlier layouts (TD-LN's scalar gates) in today's shapes, before the check
        if hasattr(m, "upgrade_state_dict"):
            m.upgrade_state_dict(state, f"{name}." if name else "")
    want = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (config wants {tuple(want[k].shape)})" for k, v in state.items()
             if k in want and v.shape != want[k].shape]
    if wrong:
        raise ValueError(f"{wfile} does not match its config: {len(wrong)} tensor(s) of another shape: "
                         f"{'; '.join(wrong[:4])}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "unembed.weight")]
    if missing or unexpected:
        raise ValueError(f"{wfile} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.weight_source = str(d) if step is None else f"{d} at step {step}"
    if "seed" in training:
        model.seed = training["seed"]
        model.name = seed_name(cfg.strategy, training["seed"])
    return model.eval()


def _initial_state(cfg: ZooConfig, training: dict, d: Path) -> dict[str, torch.Tensor]:
    """The step-0 weights of a zoo run: built from its seed (on the CPU), with the b_U prior init if it had one,
    checked against the init hash in its training record."""
    if "seed" not in training:
        raise ValueError(f"{d} has no training record with a seed: its initial weights cannot be rebuilt")
    from interp.train.zoo import state_sha256
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(training["seed"])
        m = ZooModel(cfg)
    if training.get("differs_from_shared_recipe", {}).get("unembed_bias_init") == "log_unigram":
        raise ValueError(f"{d}: step 0 of a model with a data-dependent b_U init is not rebuilt; use step ≥ 1")
    if training.get("init_sha256") and state_sha256(m) != training["init_sha256"]:
        raise ValueError(f"{d}: the rebuilt initial weights do not match the training record's init_sha256 "
                         "(the zoo code changed since it was trained)")
    return m.state_dict()
