"""GPT-2: Pre-LN, x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)); final ln_f (its names: the "gpt2" row of families.py).

LN-free GPT-2 (schaeff/gpt2-*_LNFree*) switches LayerNorm off with eps = 1e12 and weights × 1e6; as its model
cards recommend, ln_1, ln_2 and ln_f are replaced by identity and the card says placement "none". Their hook_in
and hook_normalized stay (both carry the stream); there is no hook_scale.
"""
from __future__ import annotations

from torch import nn

from interp.models.decoder import HookedDecoder

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


class HookedGPT2(HookedDecoder):
    """A transformers `GPT2LMHeadModel`; LN-free when its LayerNorms were replaced by identity."""

    def wire(self) -> None:
        if isinstance(self.hf.transformer.ln_f, nn.Identity):
            self.placement_override = self.norm_override = "none"
        super().wire()
