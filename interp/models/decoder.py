"""Every transformers decoder family through one adapter: a `Decoder` row names which submodule is which.

The placements (what each block computes; `ln*` are the row's norms, A / M the attention and the MLP):
  pre        x = x + A(ln1(x));             x = x + M(ln2(x))                 Llama, Qwen, Mistral, GPT-2 ...
  peri       x = x + ln1_post(A(ln1(x)));   x = x + ln2_post(M(ln2(x)))       Gemma-2, Gemma-3
  reordered  x = x + ln1_post(A(x));        x = x + ln2_post(M(x))            OLMo-2 (norms after each sublayer)
  parallel   x = x + A(ln1(x)) + M(ln2(x))  (one shared ln1 when ln2 is None) GPT-NeoX, GPT-J, Phi, Cohere
plus a final norm before the unembedding. hook_attn_out / hook_mlp_out are what each sublayer adds to the stream
(after the output norm in peri / reordered blocks, times Granite's residual multiplier); attn.hook_out /
mlp.hook_out are the raw sublayer outputs where an output norm follows. hook_resid_mid is x + hook_attn_out
(in parallel blocks no sublayer reads it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from interp.models.hooked import QK_NORMS, BlockHooks, HookedHF, wire_residual
from interp.models.hooks import fire, on_output
from interp.models.norm_hooks import NormHooks

NORM_SLOTS = ("ln1", "ln1_post", "ln2", "ln2_post")


@dataclass(frozen=True)
class Decoder:
    """One decoder family's names: attribute paths under `hf.<base>` (layers, final norm) and under each layer."""

    family: str
    placement: str                      # pre | peri | reordered | parallel (see the module docstring)
    norm: str                           # NormHooks kind of the block and final norms
    card_norm: str = ""                 # the card's norm_kind ("" = norm; Gemma's rmsnorm1p is an rmsnorm)
    base: str = "model"
    layers: str = "layers"
    final: str | None = "norm"
    ln1: str | None = "input_layernorm"
    ln2: str | None = "post_attention_layernorm"
    ln1_post: str | None = None
    ln2_post: str | None = None
    attn: str = "self_attn"
    mlp: str = "mlp"
    q_norm: str | None = None           # attribute names inside the attention module
    k_norm: str | None = None
    qk_norm: str = ""                   # the QK-norms' kind ("" = norm)
    qk_heads_first: bool = False        # the QK-norm module takes [b, h, t, d_head]
    qk_flag: str | None = None          # the config switch of optional QK-norms (Phi, StableLM, Cohere)
    norm_eps: float | None = None       # for norm modules that do not carry their eps (OLMo)
    pos_embed: str | None = None        # a learned position embedding under base (GPT-2's wpe)
    residual_scale: Callable | None = None   # config -> multiplier of each sublayer's delta (Granite)
    logit_scale: Callable | None = None      # config -> multiplier of the logits (Granite, Cohere)
    softcap: Callable | None = None          # config -> final logit soft cap or None (Gemma-2)

    def names(self) -> dict[str, str]:
        """The block norms this family has: slot (ln1, ln1_post, ln2, ln2_post) -> attribute name."""
        return {s: getattr(self, s) for s in NORM_SLOTS if getattr(self, s)}


def sub(root: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted `path` under root."""
    return root.get_submodule(path)


class HookedDecoder(HookedHF):
    """A transformers causal LM wired by the `Decoder` row `layout` (set by `families.wrap`)."""

    layout: Decoder

    def wire(self) -> None:
        lay, cfg = self.layout, self.hf.config
        self.family, self.placement = lay.family, getattr(self, "placement_override", None) or lay.placement
        kind = getattr(self, "norm_override", None) or lay.norm
        self.norm_kind = "none" if kind == "none" else (lay.card_norm or lay.norm)
        if lay.logit_scale is not None:
            self.logit_multiplier = float(lay.logit_scale(cfg))
        if lay.softcap is not None:
            self.logit_softcap = lay.softcap(cfg)
        scale = float(lay.residual_scale(cfg)) if lay.residual_scale is not None else 1.0
        base = sub(self.hf, lay.base)
        if lay.pos_embed:
            self.wire_pos_embed(sub(base, lay.pos_embed))  # hook_pos_embed, [b, t, d]
        for l, layer in enumerate(sub(base, lay.layers)):
            attn, mlp = sub(layer, lay.attn), sub(layer, lay.mlp)
            qk = lay.q_norm and getattr(attn, lay.q_norm, None) is not None
            norms = {s: kind for s in lay.names()}
            post = bool(lay.ln1_post or lay.ln2_post)
            blk = BlockHooks(l, self.placement, norms, raw_sublayers=post, qk=(lay.qk_norm or lay.norm) if qk else None,
                             qk_heads_first=lay.qk_heads_first)
            for s, attr in lay.names().items():
                n = blk.norm(s)
                n._eps = lay.norm_eps
                self._handles += n.attach(sub(layer, attr))
            if qk:
                for s, attr, proj in zip(QK_NORMS, (lay.q_norm, lay.k_norm), ("q_proj", "k_proj")):
                    self._handles += blk.norm(s).attach(sub(attn, attr))
                    blk.norm_widths[s] = sub(attn, proj).out_features  # heads · d_head
            if post:
                self._handles += [on_output(attn, lambda x, b=blk: fire(b.attn.hook_out, x)),
                                  on_output(mlp, lambda x, b=blk: fire(b.mlp.hook_out, x))]
            a_delta = sub(layer, lay.ln1_post) if lay.ln1_post else attn
            m_delta = sub(layer, lay.ln2_post) if lay.ln2_post else mlp
            self._handles += wire_residual(blk, layer, a_delta, m_delta, scale)
            self.blocks.append(blk)
        if lay.final:
            self.ln_final = NormHooks(kind, sub(base, lay.final), eps=lay.norm_eps)
            self._handles += self.ln_final.attach()
