"""DeepNet: Scaling Transformers to 1,000 Layers (Wang et al. 2022) — DeepNorm, x = LN(α·x + F(x))."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "DeepNet (Wang et al. 2022)"

register(
    Claim("deepnorm_loss", PAPER, "DeepNorm (Post-LN's performance with Pre-LN's stability)",
          "DeepNorm trains where Post-LN struggles: a lower validation loss than Post-LN.",
          "val_loss", Rule("<", 0.0, "lower loss than Post-LN at the same recipe and budget"),
          "Post-LN diverges in their deeper translation models; DeepNorm trains them (up to 1,000 layers)",
          zoo=("deepnorm",), reference="post-ln",
          note="α = (2N)^¼, β = (8N)^-¼ (decoder-only); β scales the zoo's N(0, 0.02) init, not Xavier's"),
    Claim("deepnorm_stable_lr", PAPER, "DeepNorm (the model update is bounded by a constant, so Post-LN trains stably)",
          "DeepNorm does not diverge at learning rates where Post-LN diverges.",
          "stable_lr_steps", Rule(">", 0.0, "stable on at least one rung of the LR ladder where Post-LN "
                                            "diverged (the paper gives no learning-rate figure for this)"),
          None, zoo=("deepnorm",), reference="post-ln"),
)
