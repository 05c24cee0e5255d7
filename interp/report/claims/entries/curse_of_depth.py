"""The Curse of Depth in Large Language Models (Sun et al. 2025) and its fix, LayerNorm Scaling (LNS)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Curse of Depth / LayerNorm Scaling (Sun et al. 2025)"

register(
    Claim("cod_exponential", PAPER, "§3 (Pre-LN output variance grows as Θ(exp L))",
          "In Pre-LN the variance of the block outputs grows exponentially with depth.",
          "growth_shape", Rule(">", 0.0, "the paper's law is exponential: it must fit ln var better than a linear "
                                          "law of equal parameter count"),
          None, zoo=("pre-ln",), real=("pre",)),
    Claim("lns_bounded", PAPER, "§4 (LNS turns exponential into polynomial growth)",
          "LayerNorm Scaling grows the variance more slowly with depth than Pre-LN.",
          "growth_rate", Rule("<", 0.0, "slower growth: a smaller slope of ln var per layer than Pre-LN's"),
          None, zoo=("lns",), reference="pre-ln"),
    Claim("lns_deep_effective", PAPER, "§5 (deep layers contribute more with LNS)",
          "With LayerNorm Scaling the deep blocks turn the stream more, relative to the shallow ones, than in Pre-LN.",
          "angular_deep_shallow", Rule(">", 0.0, "the deep/shallow angular-distance ratio is higher than Pre-LN's"),
          None, zoo=("lns",), reference="pre-ln"),
    Claim("lns_deep_skip", PAPER, "§5 (with LNS, pruning deep layers hurts more)",
          "With LayerNorm Scaling removing a deep block costs more, relative to removing a shallow one, than in "
          "Pre-LN.",
          "skip_deep_shallow", Rule(">", 0.0, "deep blocks matter more than in Pre-LN: a larger deep − shallow "
                                              "skip loss than Pre-LN's"),
          None, zoo=("lns",), reference="pre-ln"),
    Claim("lns_loss", PAPER, "§5, Table 1 (pre-training perplexity 130M–7B)",
          "LayerNorm Scaling reaches a lower validation loss than Pre-LN.",
          "val_loss", Rule("<", 0.0, "lower loss than Pre-LN at the same recipe and budget"),
          "perplexity 5–8 % lower than Pre-LN (130M–7B)", zoo=("lns",), reference="pre-ln"),
)
