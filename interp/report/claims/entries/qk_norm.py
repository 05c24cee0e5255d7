"""QK-norm: RMS/LayerNorm of each head's queries and keys before q·k (Dehghani et al. 2023, ViT-22B;
Wortsman et al. 2023, small-scale proxies for training instabilities; used by OLMo-2, Qwen3, Gemma-3)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "QK-norm (Dehghani et al. 2023; Wortsman et al. 2023)"
QK = ("pre-rmsnorm-qk", "reordered")

register(
    Claim("qk_stable_lr", PAPER, "Wortsman et al. §3.1 (attention logit growth; qk-layernorm)",
          "QK-norm raises the largest stable learning rate over Pre-RMSNorm.",
          "stable_lr_steps", Rule(">", 0.0, "stable on at least one rung of the LR ladder where Pre-RMSNorm "
                                            "diverged"),
          "without qk-layernorm the small models diverge at high LR; with it they train", zoo=QK,
          reference="pre-rmsnorm"),
    Claim("qk_lr_sensitivity", PAPER, "Wortsman et al. §3.1 (qk-layernorm lowers LR sensitivity)",
          "QK-norm lowers the sensitivity of the final loss to the learning rate.",
          "lr_sensitivity", Rule("<", 0.0, "lower LR sensitivity than Pre-RMSNorm over the same ladder"),
          None, zoo=QK, reference="pre-rmsnorm"),
    Claim("qk_logit_scale", PAPER, "Dehghani et al. (attention logits grow without QK-norm); Wortsman et al. §3.1",
          "QK-norm keeps attention logits smaller than Pre-RMSNorm's.",
          "max_attn_logit", Rule("<", 0.0, "a smaller largest |q·k|/√d_head (log10) than Pre-RMSNorm, same "
                                           "recipe and budget"),
          "ViT-22B: without QK-norm attention logits diverge, giving near one-hot attention", zoo=QK,
          reference="pre-rmsnorm",
          note="with unit gains QK-norm bounds |q·k|/√d_head by √d_head (4 at the zoo's d_head = 16)"),
)
