"""Massive Activations in Large Language Models (Sun et al. 2024)."""
import math

from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Massive Activations (Sun et al. 2024)"

register(
    Claim("massive_present", PAPER, "§2 (massive activations exist across LLMs, Fig. 1)",
          "LLMs carry massive activations (|x| > 100 and ≥ 1000× the median) in most sequences.",
          "massive_fraction", Rule(">", 0.5, "they appear in nearly every sequence (at fixed dims / first tokens); "
                                             "more than half of the held-out sequences"),
          None, real=(), note="the zoo (12 × 64, 2 M tokens) is far below the scale the paper studies"),
    Claim("massive_mean_ablation", PAPER, "§3 (setting massive activations to their mean keeps perplexity)",
          "Setting the massive activations to their mean value leaves the loss unchanged.",
          "ablation_delta", Rule("within", math.log(1.02),
                                 "unchanged: perplexity moves by under 2 %, |Δ CE| < ln 1.02 nats/token (the paper's "
                                 "mean-ablation moves perplexities of about 5 by under 0.1, i.e. under 2 %)"),
          None, real=(), params={"mode": "mean"}),
    Claim("massive_zero_ablation", PAPER, "§3 (setting them to zero destroys the model)",
          "Setting the massive activations to zero raises the loss drastically.",
          "ablation_delta", Rule(">", 1.0, "destroyed: Δ CE above 1 nat/token (the paper's perplexity explodes)"),
          None, real=(), params={"mode": "zero"}),
)
