"""Peri-LN: Revisiting Normalization Layer in the Transformer Architecture (Kim et al. 2025)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Peri-LN (Kim et al. 2025)"

register(
    Claim("peri_linear", PAPER, "§3 (Peri-LN: Var(x_ℓ+1) ≈ Var(x_ℓ) + β, linear growth)",
          "Peri-LN's stream variance grows linearly with depth, not exponentially.",
          "growth_shape", Rule("<", 0.0, "the paper's law is linear: it must fit ln var better than an exponential"),
          None, zoo=("peri-ln",), real=("peri",),
          note="every block adds an output-normalized write, so linear growth is expected by construction"),
    Claim("peri_fewer_spikes", PAPER, "§4 (gradient-norm spikes during pre-training)",
          "Peri-LN has fewer gradient-norm spikes during training than Pre-LN.",
          "grad_spike_rate", Rule("<", 0.0, "fewer spikes per 1000 steps than Pre-LN"),
          "400M: about half of Pre-LN's spikes", zoo=("peri-ln",), reference="pre-ln"),
    Claim("peri_stable_lr", PAPER, "abstract (\"steadier gradient flow, and convergence stability\")",
          "Peri-LN trains without diverging at learning rates where Pre-LN diverges.",
          "stable_lr_steps", Rule(">", 0.0, "more stable: at least one rung of the LR ladder stable where Pre-LN "
                                            "diverged (the paper gives no learning-rate figure to compare with)"),
          None, zoo=("peri-ln",), reference="pre-ln"),
    Claim("peri_loss", PAPER, "§4, Table 1 (pre-training loss 400M–3.2B)",
          "Peri-LN reaches a lower validation loss than Pre-LN.",
          "val_loss", Rule("<", 0.0, "lower loss than Pre-LN at the same recipe and budget"),
          "400M: C4 loss 3.34 vs 3.43", zoo=("peri-ln",), reference="pre-ln"),
    Claim("peri_variance_rise", PAPER, "abstract (\"Peri-LN consistently achieves more balanced variance "
          "growth\"); Fig. 1 plots the variance by depth during training for Pre-LN and Post-LN",
          "Over training, Peri-LN's residual-stream variance rises less than Pre-LN's.",
          "variance_rise", Rule("<", 0.0, "Pre-LN's hidden states grow as training proceeds while Peri-LN's output "
                                "norms keep them balanced: a smaller rise than Pre-LN's"),
          None, zoo=("peri-ln",), reference="pre-ln",
          note="from the first kept step after the LR warm-up (10 % of the run) to the final step of the seed that "
               "ships weights along training; step 0 is left out because there Pre-LN's blocks write small outputs "
               "(init std 0.02) while Peri-LN's output norms write unit variance, which would make the rise differ "
               "by construction", params={"start": "warmup"}),
)
