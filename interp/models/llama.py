"""SmolLM2 and other Llama models: Pre-RMSNorm, x = x + attn(ln1(x)); x = x + mlp(ln2(x)); final RMSNorm."""
from __future__ import annotations

from interp.models.hooked import BlockHooks, HookedHF, wire_residual
from interp.models.norm_hooks import NormHooks


class HookedLlama(HookedHF):
    """A transformers `LlamaForCausalLM`; ln1 = input_layernorm, ln2 = post_attention_layernorm."""

    family, placement, norm_kind = "llama", "pre", "rmsnorm"

    def wire(self) -> None:
        m = self.hf.model
        for l, layer in enumerate(m.layers):
            blk = BlockHooks(l, "pre", {"ln1": "rmsnorm", "ln2": "rmsnorm"})
            self._handles += blk.ln1.attach(layer.input_layernorm) + blk.ln2.attach(layer.post_attention_layernorm)
            self._handles += wire_residual(blk, layer, layer.self_attn, layer.mlp)
            self.blocks.append(blk)
        self.ln_final = NormHooks("rmsnorm", m.norm)
        self._handles += self.ln_final.attach()
