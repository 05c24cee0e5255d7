"""Atomic training checkpoints: model and optimizer tensors in safetensors, everything else in JSON.

Layout of a run directory:
    ckpt-000120/ model.safetensors  optimizer.safetensors (Adam moments, step counts, torch RNG state,
                 telemetry carry-over)  state.json (step, config, param groups, evaluations, metadata)
                 steps.parquet  layers.parquet (the logs up to that step)
    latest.json  {"step": 120, "dir": "ckpt-000120"}: written last, by rename, so it always names a whole
                 checkpoint; older checkpoint directories are deleted only after it is updated. A step saved
                 again (after the final evaluation) moves the old folder aside (.ckpt-000120.old, which
                 `latest` falls back to) before the new one is renamed into place, and deletes it after.
A run directory is marked as such (`.interp-output`, kind "training-run"); a non-empty folder that is neither
marked nor holds a run's own files is refused (`check_run_dir`), and only `ckpt-NNNNNN` folders holding a
state.json are ever deleted.
`state.json` carries the run's fingerprint (`run_fingerprint`: SHA-256 of the initial weights and of the
training tokens); a resume with another model, seed or data is refused.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from interp.fingerprint import sha256_model, sha256_tensors
from interp.outputs import LEGACY, MARKER, OutputRefused, apply_umask, atomic_write_bytes, marker_kind, temp_dir, \
    write_marker

LATEST = "latest.json"
RUN_KIND = "training-run"
CKPT_DIR = re.compile(r"ckpt-\d{6}")
RUN_FILES = {LATEST, "steps.parquet", "layers.parquet", "result.json", "snapshots", "FAILED", "cost.json", MARKER}
FINGERPRINT_WORDS = {"init_sha256": "the model's initial weights (another model or seed)",
                     "train_sha256": "the training tokens", "val_sha256": "the validation tokens"}


def _ours(name: str) -> bool:
    return name in RUN_FILES or bool(CKPT_DIR.fullmatch(name)) or (name.startswith(".") and name.endswith(".tmp")) \
        or name.startswith(".ckpt-")


def is_run_dir(d: Path) -> bool:
    """Whether `d` holds what a training run writes (a run directory from before markers existed): some of a
    run's own files. A run writes only those names and deletes only its `ckpt-NNNNNN` folders, so other files
    kept beside them (a job runner's notes) are never touched."""
    try:
        return any(_ours(e.name) and not e.name.startswith(".") for e in Path(d).iterdir())
    except OSError:
        return False


LEGACY[RUN_KIND] = is_run_dir


def check_run_dir(run_dir: str | Path) -> None:
    """Refuse a run directory that holds anything a training run did not write (one line naming it)."""
    d = Path(run_dir)
    if not os.path.lexists(d):
        return
    if not d.is_dir() or d.is_symlink():
        raise OutputRefused(f"run directory {d} exists and is not a folder; choose another path")
    if marker_kind(d) == RUN_KIND or not any(d.iterdir()) or (marker_kind(d) is None and is_run_dir(d)):
        return
    raise OutputRefused(f"run directory {d} holds files a training run did not write; refusing to write there: "
                        "choose an empty or new folder")


def run_fingerprint(model: torch.nn.Module, train_tokens: torch.Tensor, val_tokens: torch.Tensor | None) -> dict:
    """What a resumed run must match: SHA-256 of the initial weights and of the train / validation tokens."""
    fp = {"init_sha256": sha256_model(model), "train_sha256": sha256_tensors({"tokens": train_tokens})}
    if val_tokens is not None:
        fp["val_sha256"] = sha256_tensors({"tokens": val_tokens})
    return fp


def check_fingerprint(ck: Path, saved: dict | None, now: dict) -> None:
    """Refuse to resume `ck` when its recorded fingerprint differs (checkpoints from before fingerprints pass)."""
    if saved is None:
        return
    diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if diff:
        raise ValueError(f"{ck} belongs to another run: {', '.join(FINGERPRINT_WORDS.get(k, k) for k in diff)} "
                         "differ; use a fresh run directory or the same model, seed and data")


def _aside(final: Path) -> Path:
    """Where `save_checkpoint` keeps the checkpoint it is replacing by one of the same step until the new one is in."""
    return final.with_name(f".{final.name}.old")


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of `run_dir`, or None."""
    p = Path(run_dir) / LATEST
    if not p.is_file():
        return None
    d = Path(run_dir) / json.loads(p.read_text())["dir"]
    if not d.exists() and (_aside(d) / "state.json").is_file():  # killed while replacing d by a re-save
        return _aside(d)
    if not (d / "state.json").is_file():
        raise ValueError(f"{p} names {d.name}, which is incomplete; delete {run_dir} to start over")
    return d


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into safetensors-able tensors and a JSON-able rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().contiguous().clone()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in rest["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    state: dict, extra_tensors: dict[str, torch.Tensor], frames: dict, keep: int = 1) -> Path:
    """Write checkpoint `step` to a temp directory, rename it into place, then point latest.json at it."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if marker_kind(run_dir) != RUN_KIND:
        write_marker(run_dir, RUN_KIND)
    name = f"ckpt-{step:06d}"
    tmp = temp_dir(run_dir / name)
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, rest = optimizer_tensors(opt)
        tensors.update({f"extra.{k}": v.detach().contiguous().clone() for k, v in extra_tensors.items()})
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        for fname, df in frames.items():
            df.to_parquet(tmp / fname, index=False)
        (tmp / "state.json").write_text(json.dumps({**state, "optimizer": rest}, indent=1))
        apply_umask(tmp)
        final, aside = run_dir / name, _aside(run_dir / name)
        if final.exists():  # the same step saved again (after the final evaluation): keep it whole until replaced
            shutil.rmtree(aside, ignore_errors=True)
            final.rename(aside)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(run_dir / LATEST, json.dumps({"step": step, "dir": name}).encode())
    for old in run_dir.glob(".ckpt-*.old"):  # this one's, and any a kill left behind: latest.json names a whole one
        shutil.rmtree(old, ignore_errors=True)
    olds = sorted(p for p in run_dir.glob("ckpt-*") if CKPT_DIR.fullmatch(p.name) and p.name != name
                  and (p / "state.json").is_file())  # only checkpoints this code wrote
    for old in olds[:max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Restore model and optimizer in place from `ckpt`; return (state, extra tensors)."""
    state = json.loads((ckpt / "state.json").read_text())
    missing, unexpected = load_model(model, str(ckpt / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt} does not match this model (missing {sorted(missing)[:3]}, unexpected "
                         f"{sorted(unexpected)[:3]}); use a fresh run directory")
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    restore_optimizer(opt, {k: v for k, v in tensors.items() if k.startswith("state.")}, state.pop("optimizer"))
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return state, extra
