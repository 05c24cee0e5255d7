"""Transformers without Normalization: Dynamic Tanh (Zhu et al. 2025)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "DyT (Zhu et al. 2025)"

register(
    Claim("dyt_on_par", PAPER, "§5 (DyT matches normalized models, LLaMA 7B–70B)",
          "A DyT Transformer's validation loss is on par with its normalized counterpart's (Pre-LN).",
          "val_loss", Rule("<", 0.05, "on par: at most 0.05 nats/token worse than Pre-LN (our margin; the paper's "
                                      "LLaMA losses differ by a few hundredths)"),
          None, zoo=("dyt",), reference="pre-ln",
          note="the zoo's DyT is trained with b_U initialised to log unigram frequencies (ZOO_EXCEPTIONS)"),
)
