"""BERT encoders (all-MiniLM-L6-v2): Post-LN, x = ln1(x + attn(x)); x = ln2(x + mlp(x)); no final norm.

Hook meanings follow the zoo's Post-LN block (not TransformerBridge's BERT, whose hook_attn_out is LN1(x+attn)):
  hook_attn_out / hook_mlp_out  the attention / MLP output (what is added before the norm) = the site map's deltas
  ln1.hook_in / ln2.hook_in     the un-normalized sums x + attn, x + mlp (read these for variance growth)
  hook_resid_mid / resid_post   the carried, normalized stream (= ln1 / ln2 hook_normalized)
  embed.ln.*                    the embedding LayerNorm; blocks.0.hook_resid_pre is its output
"""
from __future__ import annotations

from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.models.hooked import BlockHooks, HookedHF
from interp.models.hooks import fire, on_input, on_output
from interp.models.norm_hooks import NormHooks


class EmbedHooks(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = NormHooks("layernorm")


class HookedBert(HookedHF):
    """A transformers `BertModel`; forward returns the final hidden states [b, t, d] (card.objective encoder)."""

    family, placement, norm_kind, objective = "bert", "post", "layernorm", "encoder"

    def wire(self) -> None:
        e = self.hf.embeddings
        self.hook_pos_embed = HookPoint()  # [b, t, d]
        self.embed = EmbedHooks()
        self._handles += [on_output(e.position_embeddings, lambda x: fire(self.hook_pos_embed, x))]
        self._handles += self.embed.ln.attach(e.LayerNorm)
        for l, layer in enumerate(self.hf.encoder.layer):
            blk = BlockHooks(l, "post", {"ln1": "layernorm", "ln2": "layernorm"})
            a, o = layer.attention.output, layer.output
            self._handles += [on_input(layer, lambda x, b=blk: fire(b.hook_resid_pre, x)),
                              on_output(a.dense, lambda x, b=blk: fire(b.hook_attn_out, x))]
            self._handles += blk.ln1.attach(a.LayerNorm)
            self._handles += [on_output(a.LayerNorm, lambda x, b=blk: fire(b.hook_resid_mid, x)),
                              on_output(o.dense, lambda x, b=blk: fire(b.hook_mlp_out, x))]
            self._handles += blk.ln2.attach(o.LayerNorm)
            self._handles += [on_output(layer, lambda x, b=blk: fire(b.hook_resid_post, x))]
            self.blocks.append(blk)
