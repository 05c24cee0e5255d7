"""DiMR and its time-dependent LayerNorm, TD-LN (Liu et al. 2024), judged where it belongs: masked diffusion
(mdlm-tdln, mdlm-adaln: same recipe, same size, ≥ 3 seeds; the window-position td-ln of the causal zoo is not a
diffusion model and is not a subject here)."""
import math

from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "TD-LN / DiMR (Liu et al. 2024)"

register(
    Claim("tdln_params", PAPER, "§3 (TD-LN: a parameter-efficient alternative to adaLN)",
          "TD-LN conditions the norms with far fewer parameters than adaLN.",
          "cond_param_ratio", Rule("<", math.log(0.1), "far fewer: at most a tenth of adaLN-Zero's conditioning "
                                                       "parameters (ln 0.1)"),
          None, zoo=("mdlm-tdln",), reference="mdlm-adaln"),
    Claim("tdln_matches_adaln", PAPER, "§3 and §5 (TD-LN replaces adaLN without loss of quality)",
          "TD-LN matches adaLN-Zero's held-out loss, with at most a tenth of its conditioning parameters.",
          "mdlm_nelbo", Rule("<", 0.05, "non-inferiority margin fixed before training: the paper gives no loss "
                                        "margin (it compares FID); 0.05 nats/token is about 5 % perplexity"),
          None, zoo=("mdlm-tdln",), reference="mdlm-adaln",
          note="the parameter budget is the tdln_params row; in masked diffusion the optimal denoiser does not "
               "depend on t (Ou et al. 2024), so a match is expected unless the conditioning itself helps or "
               "hurts training — compare mdlm-ln and mdlm-uncond in the masked-diffusion section"),
)
