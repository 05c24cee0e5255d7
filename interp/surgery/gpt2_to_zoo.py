"""GPT-2 (transformers weights) → the equal Pre-LN zoo model, so zoo surgery (LN removal) runs on GPT-2 unchanged.

GPT-2 is the zoo's `pre-ln` decoder: learned positions, LayerNorm with bias before attention and MLP, a final
LayerNorm, a tied unembedding. Its Conv1D layers store weights [in, out] (nn.Linear stores [out, in]: transpose);
its MLP uses the tanh-approximate GELU ("gelu_new"), the zoo's `act="gelu_tanh"`. The tokenizer is carried over
as an `interp.tokenize.HFTokenizer` on the same `tokenizers` object, so `model.save` writes its tokenizer.json
and BOS (<|endoftext|>) is known to fine-tuning and LN removal.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from interp.models.gpt2 import LN_FREE_EPS
from interp.surgery.fold import copy_into
from interp.zoo.config import ZooConfig
from interp.zoo.model import ZooModel

ACTS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def _hf_and_tokenizer(model_or_path) -> tuple[nn.Module, object, str]:
    """(GPT2LMHeadModel, its interp tokenizer or None, a source label) from a name, path, hooked or HF model."""
    if isinstance(model_or_path, (str, Path)):
        from interp.models import load_model
        model_or_path = load_model(model_or_path)
    if hasattr(model_or_path, "hf"):  # interp's HookedGPT2 (or another HookedHF)
        hf, tok = model_or_path.hf, getattr(model_or_path, "tokenizer", None)
        src = getattr(getattr(model_or_path, "card", None), "weight_source", "") or type(model_or_path).__name__
    else:
        hf, tok, src = model_or_path, None, type(model_or_path).__name__
    if getattr(getattr(hf, "config", None), "model_type", None) != "gpt2" or not hasattr(hf, "transformer"):
        raise ValueError(f"from_gpt2 needs a GPT-2 model (GPT2LMHeadModel, interp.load_model('gpt2') or a GPT-2 "
                         f"checkpoint directory); got {type(hf).__name__}")
    if isinstance(hf.transformer.ln_f, nn.Identity):
        raise ValueError("this GPT-2 is already LN-free (its LayerNorms were replaced by identity); "
                         "give the vanilla GPT-2 checkpoint")
    eps = [m.eps for m in hf.transformer.modules() if isinstance(m, nn.LayerNorm)] + [hf.config.layer_norm_epsilon]
    if max(eps) >= LN_FREE_EPS:  # an LN-free checkpoint loaded straight into transformers: its LN is switched off
        raise ValueError(f"this GPT-2 is already LN-free (LayerNorm eps {max(eps):g}, the LN-free checkpoints' way of "
                         "switching it off); give the vanilla GPT-2 checkpoint")
    return hf, tok, str(src)


def _zoo_tokenizer(tok):
    """The GPT-2 tokenizer as an HFTokenizer (BOS = pad = <|endoftext|>, pads right), or None if it has no backend."""
    from interp.tokenize import HFTokenizer
    backend = getattr(getattr(tok, "tok", tok), "backend_tokenizer", None)
    return None if backend is None else HFTokenizer(backend, add_bos=True, padding_side="right")


def gpt2_config(hf_config) -> ZooConfig:
    """The zoo config with GPT-2's sizes; an unsupported GPT-2 variant raises one clear error."""
    c = hf_config
    if c.activation_function not in ACTS:
        raise ValueError(f"GPT-2 activation {c.activation_function!r} has no zoo equivalent; supported: {', '.join(ACTS)}")
    if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
        raise ValueError("GPT-2 attention scaling other than 1/sqrt(d_head) has no zoo equivalent")
    return ZooConfig(n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd,
                     n_ctx=c.n_positions, d_vocab=c.vocab_size, placement="pre", norm="layernorm", final_norm=True,
                     norm_eps=c.layer_norm_epsilon, bias=True, tie_embeddings=c.tie_word_embeddings,
                     strategy="gpt2", act=ACTS[c.activation_function])


def from_gpt2(model_or_path) -> ZooModel:
    """The Pre-LN zoo model computing the same logits as a GPT-2 (HF model, interp hooked model, name or path)."""
    hf, tok, src = _hf_and_tokenizer(model_or_path)
    cfg = gpt2_config(hf.config)
    t = hf.transformer
    g = lambda p: p.detach().float()
    s = {"embed.weight": g(t.wte.weight), "pos_embed.weight": g(t.wpe.weight), "ln_final.w": g(t.ln_f.weight),
         "ln_final.b": g(t.ln_f.bias), "unembed.weight": g(hf.lm_head.weight)}
    for l, blk in enumerate(t.h):
        p = f"blocks.{l}"
        for ln, name in ((blk.ln_1, "ln1"), (blk.ln_2, "ln2")):
            s[f"{p}.{name}.w"], s[f"{p}.{name}.b"] = g(ln.weight), g(ln.bias)
        for conv, name in ((blk.attn.c_attn, "attn.qkv"), (blk.attn.c_proj, "attn.out"),
                           (blk.mlp.c_fc, "mlp.up"), (blk.mlp.c_proj, "mlp.down")):
            s[f"{p}.{name}.weight"], s[f"{p}.{name}.bias"] = g(conv.weight).T.contiguous(), g(conv.bias)
    if cfg.tie_embeddings:
        s.pop("unembed.weight")
    model = ZooModel(cfg, tokenizer=_zoo_tokenizer(tok))
    copy_into(model, s)
    model.weight_source = f"{src} (GPT-2 -> zoo)"
    return model.eval()
