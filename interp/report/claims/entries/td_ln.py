"""DiMR and its time-dependent LayerNorm, TD-LN (Liu et al. 2024)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.verdict import Rule

PAPER = "TD-LN / DiMR (Liu et al. 2024)"

register(
    Claim("tdln_params", PAPER, "§3 (TD-LN: a parameter-efficient alternative to adaLN)",
          "TD-LN conditions the norms with far fewer parameters than adaLN.",
          "cond_params", Rule("<", -2.302585092994046, "far fewer: under a tenth of adaLN's conditioning "
                                                        "parameters (ln 0.1)"),
          None, zoo=("mdlm-tdln",), reference="mdlm-adaln", params={"base": "mdlm-ln"}),
)
