"""Unified Normalization for Accelerating and Stabilizing Transformers (Yang et al. 2022).

un_smoothing_steadier: after its warm-up Unified Norm divides by the geometric mean of the last M = `window` = 4
batch statistics (its fluctuation smoothing). For small fluctuations that is the window's arithmetic mean, whose
step change is (ψ²_t − ψ²_t−M)/M: i.i.d. batch noise shrinks to 1/M = 0.25 of its step change, a drift passes
whole. As for PowerNorm's running mean (see entries/powernorm.py), the claim is a finding only when most of the
batch statistics' mean-square step change is noise the smoothing removes: ratio below √((1 + (1/M)²)/2) = 0.729.
"""
import inspect

from interp.norms import UnifiedNorm
from interp.report.claims.entries.powernorm import FLUCTUATION_NOISE, noise_fraction_boundary
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Unified Normalization (Yang et al. 2022)"
WINDOW = inspect.signature(UnifiedNorm).parameters["window"].default   # 4, the authors' NLP setting
WINDOW_NOISE_RATIO = 1 / WINDOW                                          # 0.25
SMOOTHING_STEADIER = noise_fraction_boundary(WINDOW_NOISE_RATIO)        # 0.729

register(
    Claim("un_fluctuation", PAPER, "§3 (activation statistics fluctuate over iterations)",
          "Batch statistics of a Transformer's activations fluctuate strongly from one training step to the next.",
          "bstat_fluctuation", Rule(">", FLUCTUATION_NOISE, "above the 2/√N = 0.0625 that independent Gaussian "
                                                             "tokens give at N = 8 × 128 tokens per batch; the paper "
                                                             "gives no number"),
          None, zoo=("unified-norm",)),
    Claim("un_smoothing_steadier", PAPER, "§3 (fluctuation smoothing of the forward statistics)",
          "The statistic Unified Norm divides by in training (the geometric mean of the last 4 batch statistics) is "
          "steadier than the batch statistics: most of their step-to-step change is noise the window averages "
          "away, not drift it has to follow.",
          "dstat_steadiness",
          Rule("<", SMOOTHING_STEADIER, f"a window mean of M = {WINDOW} passes a drift whole and shrinks i.i.d. batch "
                                        f"noise to 1/M = {WINDOW_NOISE_RATIO:g} of its step change; below "
                                        f"√((1 + {WINDOW_NOISE_RATIO:g}²)/2) = {SMOOTHING_STEADIER:.3f} more than half "
                                        "the batch statistics' mean-square step change is noise it removes; the "
                                        "paper gives no number"),
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
