"""A transformers checkpoint directory (config.json + weights + tokenizer) → the matching hooked model."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from interp.models.families import is_encoder, layout_for, unsupported, wrap
from interp.models.gpt2 import is_ln_free, strip_layernorms
from interp.models.hooked import HookedHF
from interp.tokenize import load_transformers_tokenizer


def from_pretrained(loader, d: Path, dtype: torch.dtype):
    """`loader.from_pretrained` with SDPA attention, or eager for families that have no SDPA path (Gemma-2, MPNet).
    Weights that do not match config.json are refused in one line: transformers would initialize the missing or
    misshapen tensors at random and only print a report."""
    try:
        try:
            hf, info = loader.from_pretrained(str(d), dtype=dtype, attn_implementation="sdpa", output_loading_info=True)
        except ValueError as e:
            if "scaled_dot_product_attention" not in str(e):
                raise
            hf, info = loader.from_pretrained(str(d), dtype=dtype, attn_implementation="eager", output_loading_info=True)
    except RuntimeError as e:
        if "mismatched_sizes" not in str(e):
            raise
        raise ValueError(f"{d}: tensors in its weights have other shapes than its config.json asks for: the weights "
                         "belong to another configuration; pass the config.json they were saved with") from None
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("pooler.")]  # the pooler is never read
    if missing:
        raise ValueError(f"{d}: its weights lack {len(missing)} tensor(s) its config.json calls for (e.g. "
                         f"{sorted(missing)[0]}), which would be random: the weights belong to another configuration "
                         "or were saved incompletely; pass the config.json they were saved with")
    return hf


def check_vocab(n_tokens: int, cfg, tokenizer_dir: Path, d: Path) -> None:
    """A tokenizer read from another folder must not have more tokens than the model has embedding rows (its ids
    would index past them): one line saying so, before the weights load."""
    rows = getattr(cfg.get_text_config(), "vocab_size", None)
    if isinstance(rows, int) and n_tokens > rows:
        raise ValueError(f"the tokenizer in {tokenizer_dir} has {n_tokens} tokens but {d} embeds only {rows}: it is "
                         "another model's vocabulary; pass the tokenizer this model was trained with")


def load_hf_dir(d: str | Path, name: str, dtype: torch.dtype = torch.float32, tokenizer_dir: Path | None = None,
                weight_source: str = "", quantization: str = "", extra: dict | None = None) -> HookedHF:
    """Load the transformers checkpoint in `d` (SDPA attention) and wrap it; LN-free GPT-2 loses its norms. The
    tokenizer is read from `tokenizer_dir` (default `d`) before the weights, so its errors come first."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    d = Path(d)
    try:
        cfg = AutoConfig.from_pretrained(str(d))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # a model_type it does not know, a bad field
        raise ValueError(f"{d}: transformers cannot read its config.json ({str(e).splitlines()[0][:160]})") from None
    try:
        layout_for(cfg)
    except ValueError:
        raise unsupported(cfg.model_type, str(d)) from None
    encoder = is_encoder(cfg.model_type)
    tok = load_transformers_tokenizer(tokenizer_dir or d, layout_for(cfg).family, encoder=encoder)
    if tokenizer_dir is not None and Path(tokenizer_dir) != d:
        check_vocab(tok.vocab_size, cfg, Path(tokenizer_dir), d)
    from safetensors import SafetensorError
    try:
        hf = from_pretrained(AutoModel if encoder else AutoModelForCausalLM, d, dtype)
    except (OSError, SafetensorError) as e:  # SafetensorError: a truncated or corrupt safetensors file
        raise ValueError(f"could not load the weights in {d} ({str(e)[:200]}); re-download or rebuild them") from None
    except pickle.UnpicklingError:  # torch.load(weights_only=True) met code or objects, not just tensors
        raise ValueError(f"{d}: its pickle weights hold more than tensors (code or objects) and are never run; "
                         "convert the checkpoint to safetensors where you trust its source") from None
    extra = dict(extra or {})
    if cfg.model_type == "gpt2" and is_ln_free(cfg):
        strip_layernorms(hf)
        extra["ln_free"] = f"LayerNorm replaced by identity (checkpoint eps = {cfg.layer_norm_epsilon:g})"
    return wrap(hf, tok, name=name, weight_source=weight_source or str(d), quantization=quantization, extra=extra)
