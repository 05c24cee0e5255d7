"""Transformers don't need LayerNorm at inference time (Baroni et al. 2025; Heimersheim 2024)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "LN-free GPT-2 (Baroni et al. 2025)"

register(
    Claim("ln_removal_small", PAPER, "§4, Table 1 (CE after removal vs the vanilla fine-tune)",
          "LayerNorm can be removed by fine-tuning at a small loss cost against the same fine-tuning with LN kept.",
          "ln_removal_cost", Rule("<", 0.15, "small: about twice GPT-2 small's +0.067 nats"),
          "GPT-2 small: +0.067 nats (3.0797 vs 3.0126)", zoo=("pre-ln-lnfree",), reference="pre-ln-vanilla"),
)

register(
    Claim("ln_free_entropy_neurons", PAPER, "§5 (entropy / confidence neurons after LN removal)",
          "After LN removal the entropy (confidence) neurons no longer change the prediction's entropy.",
          "entropy_neuron_effect", Rule("<", -0.6931471805599453, "inactive: at most half the entropy effect "
                                                                   "they keep in the vanilla control (ln 0.5; our "
                                                                   "line, the paper reports the mechanism gone)"),
          None, zoo=("pre-ln-lnfree",), reference="pre-ln-vanilla"),
)
