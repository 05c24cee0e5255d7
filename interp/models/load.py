"""A transformers checkpoint directory (config.json + weights + tokenizer) → the matching hooked model."""
from __future__ import annotations

from pathlib import Path

import torch

from interp.models.bert import HookedBert
from interp.models.gemma import HookedGemma3
from interp.models.gpt2 import HookedGPT2, is_ln_free, strip_layernorms
from interp.models.hooked import HookedHF
from interp.models.llama import HookedLlama
from interp.models.tokenizer import load_transformers_tokenizer

FAMILIES: dict[str, type[HookedHF]] = {"llama": HookedLlama, "gemma3_text": HookedGemma3, "gemma3": HookedGemma3,
                                       "gpt2": HookedGPT2, "bert": HookedBert}


def load_hf_dir(d: str | Path, name: str, dtype: torch.dtype = torch.float32, tokenizer_dir: Path | None = None,
                weight_source: str = "", quantization: str = "", extra: dict | None = None) -> HookedHF:
    """Load the transformers checkpoint in `d` (SDPA attention) and wrap it; LN-free GPT-2 loses its norms."""
    from transformers import AutoConfig, AutoModelForCausalLM, BertModel
    d = Path(d)
    cfg = AutoConfig.from_pretrained(str(d))
    if cfg.model_type not in FAMILIES:
        raise ValueError(f"{d}: model type {cfg.model_type!r} is not supported; supported: {', '.join(FAMILIES)}")
    cls = FAMILIES[cfg.model_type]
    loader = BertModel if cls is HookedBert else AutoModelForCausalLM
    try:
        hf = loader.from_pretrained(str(d), dtype=dtype, attn_implementation="sdpa")
    except OSError as e:
        raise ValueError(f"could not load the weights in {d} ({str(e)[:200]}); re-download or rebuild them") from None
    extra = dict(extra or {})
    if cls is HookedGPT2 and is_ln_free(cfg):
        strip_layernorms(hf)
        extra["ln_free"] = f"LayerNorm replaced by identity (checkpoint eps = {cfg.layer_norm_epsilon:g})"
    tok = load_transformers_tokenizer(tokenizer_dir or d, cls.family)
    return cls(hf, tok, name=name, weight_source=weight_source or str(d), quantization=quantization, extra=extra)
