"""Post-LN encoders (BERT, RoBERTa, MPNet, DistilBERT) through one adapter: an `Encoder` row names the modules.

Each block computes x = ln1(x + A(x)); x = ln2(x + M(x)); there is no final norm. Hook meanings follow the zoo's
Post-LN block (not TransformerBridge's BERT, whose hook_attn_out is LN1(x + attn)):
  hook_attn_out / hook_mlp_out  the attention / MLP output (what is added before the norm) = the site map's deltas
  ln1.hook_in / ln2.hook_in     the un-normalized sums x + attn, x + mlp (read these for variance growth)
  hook_resid_mid / resid_post   the carried, normalized stream (= ln1 / ln2 hook_normalized)
  embed.ln.*                    the embedding LayerNorm; blocks.0.hook_resid_pre is its output
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from interp.models.decoder import sub
from interp.models.hooked import BlockHooks, HookedHF
from interp.models.hooks import fire, on_input, on_output
from interp.models.norm_hooks import NormHooks


@dataclass(frozen=True)
class Encoder:
    """One encoder family's names: under the model (embeddings, layers) and under each layer."""

    family: str
    embeddings: str = "embeddings"
    pos_embed: str = "position_embeddings"   # under embeddings
    embed_ln: str = "LayerNorm"               # under embeddings
    layers: str = "encoder.layer"
    attn_out: str = "attention.output.dense"  # the module whose output is the attention's delta
    ln1: str = "attention.output.LayerNorm"
    mlp_out: str = "output.dense"
    ln2: str = "output.LayerNorm"
    pad_offset: bool = False                  # positions count from padding_idx + 1 (RoBERTa, MPNet)


class EmbedHooks(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = NormHooks("layernorm")


class HookedEncoder(HookedHF):
    """A transformers encoder model; forward returns the final hidden states [b, t, d] (card.objective encoder)."""

    placement, norm_kind, objective = "post", "layernorm", "encoder"
    layout: Encoder

    def context_length(self) -> int:
        """max_position_embeddings, less padding_idx + 1 where positions start after the padding id (RoBERTa's 514
        position rows hold 512 tokens; MPNet's padding_idx is 1 whatever its config says)."""
        n = self.hf.config.max_position_embeddings
        return n - (sub(self.hf, self.layout.embeddings).padding_idx + 1) if self.layout.pad_offset else n

    def wire(self) -> None:
        lay = self.layout
        self.family = lay.family
        e = sub(self.hf, lay.embeddings)
        self.wire_pos_embed(sub(e, lay.pos_embed))  # hook_pos_embed, [b, t, d]
        self.embed = EmbedHooks()
        self._handles += self.embed.ln.attach(sub(e, lay.embed_ln))
        for l, layer in enumerate(sub(self.hf, lay.layers)):
            blk = BlockHooks(l, "post", {"ln1": "layernorm", "ln2": "layernorm"})
            ln1, ln2 = sub(layer, lay.ln1), sub(layer, lay.ln2)
            self._handles += [on_input(layer, lambda x, b=blk: fire(b.hook_resid_pre, x)),
                              on_output(sub(layer, lay.attn_out), lambda x, b=blk: fire(b.hook_attn_out, x))]
            self._handles += blk.ln1.attach(ln1)
            self._handles += [on_output(ln1, lambda x, b=blk: fire(b.hook_resid_mid, x)),
                              on_output(sub(layer, lay.mlp_out), lambda x, b=blk: fire(b.hook_mlp_out, x))]
            self._handles += blk.ln2.attach(ln2)
            self._handles += [on_output(layer, lambda x, b=blk: fire(b.hook_resid_post, x))]
            self.blocks.append(blk)
