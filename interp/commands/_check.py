"""Argument checks shared by the commands: each failure is one line naming the argument and what is wrong."""
from __future__ import annotations

import argparse
import importlib
import math
from pathlib import Path

TOKEN_SUFFIXES = (".npy", ".bin")
# an output folder's marker kind -> the module that names it and registers how such folders from before markers
# are recognised (interp.outputs.LEGACY); each imports torch, so `dir_target` imports it only when needed
KIND_MODULES = {"results": "interp.collectors.results", "checkpoint": "interp.zoo.io"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def at_least(a: argparse.Namespace, **minimum: int) -> None:
    """Each named argument (when given) is at least its minimum: `at_least(a, steps=1, warmup=0)`."""
    for name, lo in minimum.items():
        v = getattr(a, name, None)
        if v is not None and v < lo:
            raise ValueError(f"{flag(name)} must be at least {lo} (got {v})")


def positive_finite(a: argparse.Namespace, *names: str) -> None:
    """Each named float argument (when given) is finite and > 0 (a learning rate, a scale)."""
    for name in names:
        v = getattr(a, name, None)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"{flag(name)} must be a finite number above 0 (got {v})")


def exists_or_corpus(spec: str, what: str) -> None:
    """A token file must exist; other specs are corpus names or text files, checked when opened."""
    p = Path(spec)
    if p.suffix in TOKEN_SUFFIXES and not p.is_file():
        raise FileNotFoundError(f"{what} {spec}: no such token file")


def local_model(spec: str, what: str = "model") -> None:
    """A model spelled as a local path (it starts with /, . or ~) must exist. A name with a slash and no such
    prefix may be a registry name (schaeff/gpt2-small_LNFree300) or an HF repo id in the local cache."""
    if spec.startswith(("/", ".", "~")) and not Path(spec).expanduser().exists():
        raise FileNotFoundError(f"{what} {spec}: no such file or folder")


def zoo_checkpoint(spec: str) -> None:
    """A zoo checkpoint folder: the check interp.zoo.load makes first, with its message (that module imports torch)."""
    d = Path(spec)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"{d} is not a zoo checkpoint: it needs config.json and model.safetensors "
                                "(written by model.save)")


def dir_target(path: str | Path, kind: str, force: bool) -> None:
    """interp.outputs.check_dir_target for a `kind` in KIND_MODULES, importing that module only for a non-empty
    folder without a marker (it may be an output from before markers, which only that module recognises)."""
    from interp.outputs import LEGACY, check_dir_target, marker_kind
    p = Path(path)
    if kind not in LEGACY and p.is_dir() and not p.is_symlink() and any(p.iterdir()) and marker_kind(p) is None:
        importlib.import_module(KIND_MODULES[kind])
    check_dir_target(p, kind, force)


def apart(out: str, src: str, out_flag: str = "--out") -> None:
    """The output folder must not be the input, inside it, or hold it (writing it would replace the source)."""
    if not Path(src).exists():
        return
    o, s = Path(out).resolve(), Path(src).resolve()
    if o == s or s in o.parents or o in s.parents:
        raise ValueError(f"{out_flag} {out} is the input {src}, inside it, or holds it; write to another folder")
