"""Unified Normalization for Accelerating and Stabilizing Transformers (Yang et al. 2022)."""
from interp.report.claims.entries.powernorm import FLUCTUATION_NOISE
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Unified Normalization (Yang et al. 2022)"

register(
    Claim("un_fluctuation", PAPER, "§3 (activation statistics fluctuate over iterations)",
          "Batch statistics of a Transformer's activations fluctuate strongly from one training step to the next.",
          "bstat_fluctuation", Rule(">", FLUCTUATION_NOISE, "above the 2/√N = 0.0625 that independent Gaussian "
                                                             "tokens give at N = 8 × 128 tokens per batch; the paper "
                                                             "gives no number"),
          None, zoo=("unified-norm",)),
    Claim("un_fused_faster", PAPER, "§5 (efficiency: fused with the next linear layer at inference)",
          "Unified Norm, folded into the following linear layers, runs inference faster than LayerNorm.",
          "speedup", Rule(">", 0.0, "faster: a positive speed-up over the same-size Pre-LN model"),
          "about 31 % (GPU)", zoo=("unified-norm",),
          params={"variant": "unified-fused", "reference": "pre-ln"}),
    Claim("un_loss_on_par", PAPER, "§5 (performance on par with LN)",
          "Unified Norm's validation loss is on par with LayerNorm's (Pre-LN).",
          "val_loss", Rule("<", 0.05, "on par: at most 0.05 nats/token worse than Pre-LN (our margin; the paper "
                                      "reports task scores within a fraction of a point)"),
          None, zoo=("unified-norm",), reference="pre-ln"),
)
