"""Model surgery: Pre-LN -> Pre-RMSNorm / Pre-CRMSNorm conversion (same function) and LN removal."""
from __future__ import annotations

from interp.surgery.convert import to_crmsnorm, to_rmsnorm
from interp.surgery.gpt2_to_zoo import from_gpt2
from interp.surgery.remove_ln import STAGES, RemovalResult, fold_fakeln, lm_ce, remove_layernorm, remove_stage

__all__ = ["to_rmsnorm", "to_crmsnorm", "from_gpt2", "remove_layernorm", "remove_stage", "fold_fakeln", "lm_ce", "STAGES",
           "RemovalResult"]
