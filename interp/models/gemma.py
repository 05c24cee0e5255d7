"""Gemma-3: Peri-LN, x = x + ln1_post(attn(ln1(x))); x = x + ln2_post(mlp(ln2(x))); RMSNorm with (1 + w).

hook_embed includes the √d_model multiply; hook_attn_out / hook_mlp_out are the *post-norm* outputs (what is
added to the stream), attn.hook_out / mlp.hook_out the raw sublayer outputs. The residual stream reaches ~1e5:
it overflows float16, so keep float32 (or bfloat16).
"""
from __future__ import annotations

from interp.models.hooked import BlockHooks, HookedHF, wire_residual
from interp.models.hooks import fire, on_output
from interp.models.norm_hooks import NormHooks

NORMS = {"ln1": "input_layernorm", "ln1_post": "post_attention_layernorm",
         "ln2": "pre_feedforward_layernorm", "ln2_post": "post_feedforward_layernorm"}


class HookedGemma3(HookedHF):
    """A transformers `Gemma3ForCausalLM` (text only)."""

    family, placement, norm_kind = "gemma3", "peri", "rmsnorm"

    def wire(self) -> None:
        m = self.hf.model
        for l, layer in enumerate(m.layers):
            blk = BlockHooks(l, "peri", {n: "rmsnorm1p" for n in NORMS}, raw_sublayers=True)
            for n, attr in NORMS.items():
                self._handles += getattr(blk, n).attach(getattr(layer, attr))
            self._handles += [on_output(layer.self_attn, lambda x, b=blk: fire(b.attn.hook_out, x)),
                              on_output(layer.mlp, lambda x, b=blk: fire(b.mlp.hook_out, x))]
            self._handles += wire_residual(blk, layer, layer.post_attention_layernorm,
                                           layer.post_feedforward_layernorm)
            self.blocks.append(blk)
        self.ln_final = NormHooks("rmsnorm1p", m.norm)
        self._handles += self.ln_final.attach()
