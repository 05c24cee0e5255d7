"""Mix-LN: Unleashing the Power of Deeper Layers by Combining Pre-LN and Post-LN (Li et al. 2024)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Mix-LN (Li et al. 2024)"
_claims = []
for when, what in (("init", "at initialization"), ("trained", "after training")):
    _claims += [
        Claim(f"post_early_grads_{when}", PAPER, "§3 (Post-LN: vanishing gradients in early layers)",
              f"Post-LN's early blocks get smaller gradients than its late blocks ({what}).",
              "grad_late_early", Rule(">", 0.0, "gradient concentrated late: ln(late third / early third) > 0"),
              None, zoo=("post-ln",), params={"when": when}),
        Claim(f"pre_deep_grads_{when}", PAPER, "§3 (Pre-LN: diminished gradient norms in deeper layers)",
              f"Pre-LN's deep blocks get smaller gradients than its early blocks ({what}).",
              "grad_late_early", Rule("<", 0.0, "gradient concentrated early: ln(late third / early third) < 0"),
              None, zoo=("pre-ln",), params={"when": when}),
        Claim(f"mixln_uniform_vs_pre_{when}", PAPER, "§4 (Mix-LN: more uniform gradient norms)",
              f"Mix-LN's gradient norms are more uniform across blocks than Pre-LN's ({what}).",
              "grad_cv", Rule("<", 0.0, "more uniform: a smaller coefficient of variation than Pre-LN's"),
              None, zoo=("mix-ln",), reference="pre-ln", params={"when": when}),
        Claim(f"mixln_uniform_vs_post_{when}", PAPER, "§4 (Mix-LN: more uniform gradient norms)",
              f"Mix-LN's gradient norms are more uniform across blocks than Post-LN's ({what}).",
              "grad_cv", Rule("<", 0.0, "more uniform: a smaller coefficient of variation than Post-LN's"),
              None, zoo=("mix-ln",), reference="post-ln", params={"when": when}),
    ]
_claims += [
    Claim("pre_deep_less_effective", PAPER, "§3 (angular distance of deep layers; also Curse of Depth §2)",
          "In Pre-LN the deep blocks turn the stream less than the shallow ones (smaller angular distance).",
          "angular_deep_shallow", Rule("<", 0.0, "deep half below shallow half: ln ratio < 0"),
          None, zoo=("pre-ln",), real=("pre",)),
    Claim("pre_deep_skip", PAPER, "§3 (removing deep layers costs little)",
          "In Pre-LN removing a deep block raises the loss less than removing a shallow one.",
          "skip_deep_shallow", Rule("<", 0.0, "deep removal cheaper: mean Δ CE deep − shallow < 0"),
          None, zoo=("pre-ln",)),
    Claim("mixln_deep_effective", PAPER, "§5 (Mix-LN deep layers are more effective)",
          "With Mix-LN the deep blocks turn the stream more, relative to the shallow ones, than in Pre-LN.",
          "angular_deep_shallow", Rule(">", 0.0, "the deep/shallow angular ratio is higher than Pre-LN's"),
          None, zoo=("mix-ln",), reference="pre-ln"),
    Claim("mixln_deep_skip", PAPER, "§5 (Mix-LN deep layers are more effective; layer pruning)",
          "With Mix-LN removing a deep block costs more, relative to removing a shallow one, than in Pre-LN.",
          "skip_deep_shallow", Rule(">", 0.0, "deep blocks matter more than in Pre-LN: a larger deep − shallow "
                                              "skip loss than Pre-LN's"),
          None, zoo=("mix-ln",), reference="pre-ln"),
    Claim("mixln_loss_vs_pre", PAPER, "§5, Table 1 (pre-training perplexity, 70M–7B)",
          "Mix-LN reaches a lower validation loss than Pre-LN.",
          "val_loss", Rule("<", 0.0, "lower loss than Pre-LN at the same recipe and budget"),
          None, zoo=("mix-ln",), reference="pre-ln"),
    Claim("mixln_loss_vs_post", PAPER, "§5, Table 1 (pre-training perplexity, 70M–7B)",
          "Mix-LN reaches a lower validation loss than Post-LN.",
          "val_loss", Rule("<", 0.0, "lower loss than Post-LN at the same recipe and budget"),
          None, zoo=("mix-ln",), reference="post-ln"),
]
register(*_claims)
