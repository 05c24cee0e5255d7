"""Atomic training checkpoints: model and optimizer tensors in safetensors, everything else in JSON.

Layout of a run directory:
    ckpt-000120/ model.safetensors  optimizer.safetensors (Adam moments, step counts, torch RNG state,
                 telemetry carry-over)  state.json (step, config, param groups, evaluations, metadata)
                 steps.parquet  layers.parquet (the logs up to that step)
    latest.json  {"step": 120, "dir": "ckpt-000120"}: written last, by rename, so it always names a whole
                 checkpoint; older checkpoint directories are deleted only after it is updated.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from interp.zoo.io import atomic_write_bytes

LATEST = "latest.json"


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint directory of `run_dir`, or None."""
    p = Path(run_dir) / LATEST
    if not p.is_file():
        return None
    d = Path(run_dir) / json.loads(p.read_text())["dir"]
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
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{name}."))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, rest = optimizer_tensors(opt)
        tensors.update({f"extra.{k}": v.detach().contiguous().clone() for k, v in extra_tensors.items()})
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        for fname, df in frames.items():
            df.to_parquet(tmp / fname, index=False)
        (tmp / "state.json").write_text(json.dumps({**state, "optimizer": rest}, indent=1))
        final = run_dir / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(run_dir / LATEST, json.dumps({"step": step, "dir": name}).encode())
    olds = sorted(p for p in run_dir.glob("ckpt-*") if p.is_dir() and p.name != name)
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
