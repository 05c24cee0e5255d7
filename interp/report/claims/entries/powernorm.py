"""PowerNorm: Rethinking Batch Normalization in Transformers (Shen et al. 2020).

pn_running_steadier: why its boundary is where it is. PowerNorm divides by a running quadratic mean
R_t = α·R_t−1 + (1 − α)·ψ²_t (α = alpha_fwd = 0.9) instead of the batch ψ²_t "to stabilize fluctuations" (§4,
abstract). An EMA is smoother than its input almost by construction, so "R moves less than ψ²" (ratio < 1) would
be no finding. What the claim needs is that the batch statistics' fluctuation is of the kind an EMA removes:
batch-to-batch noise, not drift of the statistics as training changes the weights (an EMA follows a drift whole,
and then dividing by R buys no steadiness, only lag). Split ψ²_t = m_t + ε_t, m_t a drift moving δ per step,
ε_t i.i.d. with variance σ² per channel:
  batch step change:    E(ψ²_t − ψ²_t−1)² = δ² + 2σ²
  running step change:  E(R_t − R_t−1)²   = δ² + (1 − α)²·2σ²/(1 + α)   (stationary EMA, R_t−1 independent of ε_t)
so with f = 2σ²/(δ² + 2σ²), the share of the batch statistics' mean-square step change that is noise, the ratio
of RMS step changes is √(1 − f + f·r₀²), r₀ = (1 − α)/√(1 + α) = 0.0725 (pure noise) up to 1 (pure drift).
"Steadier because the fluctuation is noise the running mean averages away" is f > 1/2, i.e. the ratio below
√((1 + r₀²)/2) = 0.709. A value near 0.07 would say the batch fluctuation is all sampling noise; near 1, that it
is drift and PN's running statistic does not stabilise it. The metric is a ratio of medians over steps of
relative changes: norms over the d channels, which concentrate near their RMS. Relative changes divide by
‖ψ²_t−1‖² ≈ ‖m‖² + dσ² for the batch and ‖R_t−1‖² ≈ ‖m‖² for the running mean, which tilts the ratio up (against
the claim) by about 1 + b²/4, b the batch statistics' relative change (1.0025 at b = 0.1).
"""
import inspect

from interp.norms import PowerNorm
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "PowerNorm (Shen et al. 2020)"

# above sampling noise: for N independent Gaussian tokens per batch the expected ‖ψ²_t − ψ²_t−1‖/‖ψ²_t−1‖ is
# 2/√N (each channel's mean of z² has variance 2σ⁴/N, a difference of two of them 4σ⁴/N); N = 8 × 128 here
FLUCTUATION_NOISE = 2 / (8 * 128) ** 0.5


def noise_fraction_boundary(noise_ratio: float) -> float:
    """The ratio of RMS step changes (smoothed / batch) at which half of the batch statistics' mean-square step
    change is i.i.d. noise (shrunk to `noise_ratio` by the smoothing) and half drift (passed whole)."""
    return ((1 + noise_ratio ** 2) / 2) ** 0.5


ALPHA_FWD = inspect.signature(PowerNorm).parameters["alpha_fwd"].default   # 0.9, the authors' value
EMA_NOISE_RATIO = (1 - ALPHA_FWD) / (1 + ALPHA_FWD) ** 0.5                   # 0.0725
RUNNING_STEADIER = noise_fraction_boundary(EMA_NOISE_RATIO)                 # 0.709

register(
    Claim("pn_fluctuation", PAPER, "§3, Fig. 2 (NLP batch statistics fluctuate)",
          "In NLP training the batch statistics fluctuate strongly from step to step.",
          "bstat_fluctuation",
          Rule(">", FLUCTUATION_NOISE, "above sampling noise: independent Gaussian tokens give a relative change of "
                                       "2/√N = 0.0625 at N = 8 × 128 tokens per batch; the paper gives no number, "
                                       "only 'orders of magnitude' above CV"),
          None, zoo=("powernorm",)),
    Claim("pn_running_steadier", PAPER, "§4 (a running quadratic mean instead of batch statistics, to stabilize "
          "fluctuations)",
          "PowerNorm's running quadratic mean is steadier than the batch statistics: most of their step-to-step "
          "change is batch-to-batch noise that the running mean averages away, not drift it has to follow.",
          "rstat_steadiness",
          Rule("<", RUNNING_STEADIER, f"an EMA (α = {ALPHA_FWD:g}) passes a drift whole and shrinks i.i.d. batch noise "
                                      f"to (1−α)/√(1+α) = {EMA_NOISE_RATIO:.3f} of its step change; below "
                                      f"√((1 + {EMA_NOISE_RATIO:.3f}²)/2) = {RUNNING_STEADIER:.3f} more than half the "
                                      "batch statistics' mean-square step change is noise it removes; the paper "
                                      "gives no number"),
          None, zoo=("powernorm",)),
    Claim("pn_loss", PAPER, "§5, Tables 1–2 (PN outperforms LN)",
          "PowerNorm reaches a lower validation loss than LayerNorm (Pre-LN).",
          "val_loss", Rule("<", 0.0, "lower loss than Pre-LN at the same recipe and budget"),
          "PTB / WikiText-103 perplexity 5.6 / 3.0 lower than LN", zoo=("powernorm",), reference="pre-ln"),
)
