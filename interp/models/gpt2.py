"""GPT-2: Pre-LN, x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)); final ln_f.

LN-free GPT-2 (schaeff/gpt2-*_LNFree*) switches LayerNorm off with eps = 1e12 and weights × 1e6; as its model
cards recommend, ln_1, ln_2 and ln_f are replaced by identity and the card says placement "none". Their hook_in
and hook_normalized stay (both carry the stream); there is no hook_scale.
"""
from __future__ import annotations

from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.models.hooked import BlockHooks, HookedHF, wire_residual
from interp.models.hooks import fire, on_output
from interp.models.norm_hooks import NormHooks

LN_FREE_EPS = 1.0  # an eps this large only appears in checkpoints that switched LayerNorm off


def is_ln_free(config) -> bool:
    """Whether a GPT-2 config disables LayerNorm through a huge eps (the LN-free checkpoints' convention)."""
    return float(getattr(config, "layer_norm_epsilon", 0.0)) >= LN_FREE_EPS


def strip_layernorms(hf: nn.Module) -> None:
    """Replace ln_1, ln_2 (every block) and ln_f by identity, in place."""
    t = hf.transformer
    for blk in t.h:
        blk.ln_1, blk.ln_2 = nn.Identity(), nn.Identity()
    t.ln_f = nn.Identity()


class HookedGPT2(HookedHF):
    """A transformers `GPT2LMHeadModel`; LN-free when its LayerNorms were replaced by identity."""

    family = "gpt2"

    def wire(self) -> None:
        t = self.hf.transformer
        ln_free = isinstance(t.ln_f, nn.Identity)
        kind = "none" if ln_free else "layernorm"
        self.placement, self.norm_kind = ("none", "none") if ln_free else ("pre", "layernorm")
        self.hook_pos_embed = HookPoint()  # [b, t, d]
        self._handles += [on_output(t.wpe, lambda x: fire(self.hook_pos_embed, x))]
        for l, layer in enumerate(t.h):
            blk = BlockHooks(l, self.placement, {"ln1": kind, "ln2": kind})
            self._handles += blk.ln1.attach(layer.ln_1) + blk.ln2.attach(layer.ln_2)
            self._handles += wire_residual(blk, layer, layer.attn, layer.mlp)
            self.blocks.append(blk)
        self.ln_final = NormHooks(kind, t.ln_f)
        self._handles += self.ln_final.attach()
