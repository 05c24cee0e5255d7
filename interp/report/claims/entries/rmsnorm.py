"""Pre-RMSNorm and Pre-CRMSNorm Transformers: Equivalent and Efficient Pre-LN Transformers (Jiang et al. 2023)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

PAPER = "Pre-RMSNorm / Pre-CRMSNorm (Jiang et al. 2023)"

register(
    Claim("rms_equivalent", PAPER, "§3 (Pre-LN, Pre-RMSNorm and Pre-CRMSNorm are equivalent)",
          "Pre-LN, Pre-RMSNorm and Pre-CRMSNorm compute the same function.",
          "equivalence_error", Rule("<", 1e-9, "equal up to float64 round-off (~1e-15 per operation)"),
          "exact equivalence", zoo=("pre-ln",)),
    Claim("rms_faster", PAPER, "§5 (training and inference time 1–10 % lower)",
          "Pre-RMSNorm runs inference faster than the equivalent Pre-LN.",
          "speedup", Rule(">", 0.0, "faster: a positive speed-up over the same model with LayerNorm"),
          "1–10 %", zoo=("pre-ln",), params={"variant": "pre-rmsnorm", "reference": "pre-ln"}),
    Claim("crms_faster", PAPER, "§5 (training and inference time 1–10 % lower)",
          "Pre-CRMSNorm runs inference faster than the equivalent Pre-LN.",
          "speedup", Rule(">", 0.0, "faster: a positive speed-up over the same model with LayerNorm"),
          "1–10 %", zoo=("pre-ln",), params={"variant": "pre-crmsnorm", "reference": "pre-ln"}),
)
