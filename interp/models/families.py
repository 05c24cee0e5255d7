"""The name table: for every covered transformers `model_type`, which submodule is ln1, attn, mlp, q_norm, ...

Families that differ only in attribute names share one adapter (`HookedDecoder` / `HookedEncoder`); a row below
is all a family needs. Rows that depend on the config (GPT-NeoX's and StableLM's parallel residual, optional
QK-norms) are functions of it. An architecture not in the table is refused with one line listing the table:
see `unsupported` for why there is no generic fallback.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from interp.models.decoder import Decoder, HookedDecoder
from interp.models.encoder import Encoder, HookedEncoder
from interp.models.hooked import HookedHF

PRE = Decoder("llama", "pre", "rmsnorm")                       # Llama names: input_layernorm, post_attention_layernorm
GEMMA_PERI = Decoder("gemma3", "peri", "rmsnorm1p", card_norm="rmsnorm", ln2="pre_feedforward_layernorm",
                     ln1_post="post_attention_layernorm", ln2_post="post_feedforward_layernorm",
                     q_norm="q_norm", k_norm="k_norm", qk_heads_first=True,
                     softcap=lambda c: getattr(c, "final_logit_softcapping", None))  # None in Gemma-3's own configs
REORDERED = Decoder("olmo2", "reordered", "rmsnorm", ln1=None, ln2=None, ln1_post="post_attention_layernorm",
                    ln2_post="post_feedforward_layernorm", q_norm="q_norm", k_norm="k_norm")
NEOX = Decoder("gpt_neox", "parallel", "layernorm", base="gpt_neox", final="final_layer_norm", attn="attention")
STABLELM = Decoder("stablelm", "pre", "layernorm", q_norm="q_layernorm", k_norm="k_layernorm", qk_heads_first=True,
                   qk_flag="qk_layernorm")
ONE_NORM_PARALLEL = {"placement": "parallel", "ln2": None}

DECODERS: dict[str, Decoder | Callable[..., Decoder]] = {
    "llama": PRE,
    "mistral": replace(PRE, family="mistral"),
    "qwen2": replace(PRE, family="qwen2"),
    "qwen3": replace(PRE, family="qwen3", q_norm="q_norm", k_norm="k_norm"),
    "smollm3": replace(PRE, family="smollm3"),
    "phi3": replace(PRE, family="phi3"),
    "granite": replace(PRE, family="granite", residual_scale=lambda c: c.residual_multiplier,
                       logit_scale=lambda c: 1.0 / c.logits_scaling),
    "gemma": replace(PRE, family="gemma", norm="rmsnorm1p", card_norm="rmsnorm"),
    "gemma2": replace(GEMMA_PERI, family="gemma2", q_norm=None, k_norm=None,
                      softcap=lambda c: c.final_logit_softcapping),
    "gemma3_text": GEMMA_PERI,
    "olmo": replace(PRE, family="olmo", norm="layernorm", norm_eps=1e-5),  # LayerNorm with no weight, no bias
    "olmo2": REORDERED,
    "olmo3": replace(REORDERED, family="olmo3"),
    "gpt2": Decoder("gpt2", "pre", "layernorm", base="transformer", layers="h", final="ln_f", ln1="ln_1",
                    ln2="ln_2", attn="attn", pos_embed="wpe"),
    "starcoder2": replace(PRE, family="starcoder2", norm="layernorm"),
    "stablelm": lambda c: replace(STABLELM, **ONE_NORM_PARALLEL) if c.use_parallel_residual else STABLELM,
    "gpt_neox": lambda c: NEOX if c.use_parallel_residual else replace(NEOX, placement="pre"),
    "gptj": Decoder("gptj", "parallel", "layernorm", base="transformer", layers="h", final="ln_f", ln1="ln_1",
                    ln2=None, attn="attn"),
    "phi": replace(PRE, family="phi", norm="layernorm", final="final_layernorm", q_norm="q_layernorm",
                   k_norm="k_layernorm", qk_heads_first=True, qk_flag="qk_layernorm", **ONE_NORM_PARALLEL),
    "cohere": replace(PRE, family="cohere", norm="layernorm", q_norm="q_norm", k_norm="k_norm", qk_flag="use_qk_norm",
                      logit_scale=lambda c: c.logit_scale, **ONE_NORM_PARALLEL),
}

ENCODERS: dict[str, Encoder] = {
    "bert": Encoder("bert"),
    "roberta": Encoder("roberta", pad_offset=True),
    "mpnet": Encoder("mpnet", attn_out="attention.attn.o", ln1="attention.LayerNorm", pad_offset=True),
    "distilbert": Encoder("distilbert", layers="transformer.layer", attn_out="attention.out_lin", ln1="sa_layer_norm",
                          mlp_out="ffn.lin2", ln2="output_layer_norm"),
}


def covered() -> list[str]:
    """Every transformers model_type interp wraps."""
    return sorted({*DECODERS, *ENCODERS})


def unsupported(model_type: str, where: str = "") -> ValueError:
    """The one-line refusal for an architecture outside the table.

    Why no generic fallback (e.g. TransformerLens' TransformerBridge): a bridge names hooks, but cannot say
    where an unknown block puts its norms (pre, peri, post, parallel, reordered), whether hook_normalized is
    before or after a gain, or what a sublayer adds to the stream; collectors would silently measure the wrong
    tensors. It also forces eager attention (slower). A refusal that names the covered families is honest; a
    new family is one row in this table."""
    return ValueError(f"{where + ': ' if where else ''}model type {model_type!r} is not covered; covered: "
                      f"{', '.join(covered())} (a new family is one row in interp/models/families.py)")


def is_encoder(model_type: str) -> bool:
    return model_type in ENCODERS


def layout_for(config) -> Decoder | Encoder:
    """The name-table row for a transformers config (ValueError naming the covered families if none)."""
    t = config.model_type
    if t in ENCODERS:
        return ENCODERS[t]
    row = DECODERS.get(t)
    if row is None:
        raise unsupported(t)
    return row(config) if callable(row) else row


def wrap(hf: nn.Module, tokenizer=None, name: str = "", **info) -> HookedHF:
    """A transformers model (causal LM, or base model for encoders) as a hooked model with interp's contract."""
    lay = layout_for(hf.config)
    if isinstance(lay, Encoder):
        cls = type(f"Hooked{type(hf).__name__}", (HookedEncoder,), {"layout": lay})
    else:
        from interp.models.gpt2 import HookedGPT2
        base = HookedGPT2 if lay.family == "gpt2" else HookedDecoder
        cls = type(f"Hooked{type(hf).__name__}", (base,), {"layout": lay})
    return cls(hf, tokenizer, name=name or hf.config.model_type, **info)


def gguf_architectures() -> set[str]:
    """The GGUF `general.architecture` values transformers can dequantize."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    return set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}


def gguf_model_type(arch: str) -> str:
    """The transformers model_type a GGUF architecture loads as (transformers' own renames)."""
    return {"gemma3": "gemma3_text", "qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe"}.get(arch, arch)


def check_gguf(arch: str, path) -> None:
    """Refuse, before the slow dequantization, a GGUF that transformers cannot read or interp does not cover."""
    if arch not in gguf_architectures():
        raise ValueError(f"{path}: GGUF architecture {arch!r} cannot be dequantized by transformers (it reads: "
                         f"{', '.join(sorted(gguf_architectures()))}); convert it to a transformers checkpoint "
                         "directory (config.json + model.safetensors) and load that")
    t = gguf_model_type(arch)
    if t not in covered():
        raise unsupported(t, str(path))


def family_rows() -> list[dict]:
    """One row per covered model_type (what a checkpoint directory may hold): name "family:<type>", placement
    and norm kind with its default config, and whether its GGUF files load too."""
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging
    gguf = {gguf_model_type(a) for a in gguf_architectures()}
    rows = []
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # some default configs warn about their own token ids: not the user's concern
    try:
        configs = {t: AutoConfig.for_model(t) for t in covered()}
    finally:
        hf_logging.set_verbosity(level)
    for t in covered():
        lay = layout_for(configs[t])
        dec = isinstance(lay, Decoder)
        placement = lay.placement if dec else "post"
        if callable(DECODERS.get(t)):
            placement += " (per config)"
        norm = (lay.card_norm or lay.norm) if dec else "layernorm"
        qk = dec and lay.q_norm is not None
        qk_note = f"; QK-norm when {lay.qk_flag}" if qk and lay.qk_flag else ("; QK-norm" if qk else "")
        src = "checkpoint dir" + (" or .gguf" if t in gguf else "") + qk_note
        rows.append({"name": f"family:{t}", "family": lay.family, "placement": placement,
                         "norm_kind": norm, "source": src, "present": None, "cached": None, "cache": None, "where": ""})
    return rows
