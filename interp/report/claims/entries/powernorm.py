"""PowerNorm: Rethinking Batch Normalization in Transformers (Shen et al. 2020)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "PowerNorm (Shen et al. 2020)"

# above sampling noise: for N independent Gaussian tokens per batch the expected ‖ψ²_t − ψ²_t−1‖/‖ψ²_t−1‖ is
# 2/√N (each channel's mean of z² has variance 2σ⁴/N, a difference of two of them 4σ⁴/N); N = 8 × 128 here
FLUCTUATION_NOISE = 2 / (8 * 128) ** 0.5

register(
    Claim("pn_fluctuation", PAPER, "§3, Fig. 2 (NLP batch statistics fluctuate)",
          "In NLP training the batch statistics fluctuate strongly from step to step.",
          "bstat_fluctuation",
          Rule(">", FLUCTUATION_NOISE, "above sampling noise: independent Gaussian tokens give a relative change of "
                                       "2/√N = 0.0625 at N = 8 × 128 tokens per batch; the paper gives no number, "
                                       "only 'orders of magnitude' above CV"),
          None, zoo=("powernorm",)),
    Claim("pn_loss", PAPER, "§5, Tables 1–2 (PN outperforms LN)",
          "PowerNorm reaches a lower validation loss than LayerNorm (Pre-LN).",
          "val_loss", Rule("<", 0.0, "lower loss than Pre-LN at the same recipe and budget"),
          "PTB / WikiText-103 perplexity 5.6 / 3.0 lower than LN", zoo=("powernorm",), reference="pre-ln"),
)
