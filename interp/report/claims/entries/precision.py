"""fp16 headroom per normalization strategy: the practitioner's question behind the massive-activation and
Peri-LN papers' remarks on low precision (neither paper measures fp16 itself, so there is no paper number)."""
from interp.report.claims.registry import Claim, register
from interp.report.claims.rules import Rule

register(
    Claim("fp16_headroom", "Massive Activations (Sun et al. 2024); Peri-LN (Kim et al. 2025)",
          "their motivation: large Pre-LN activations and low-precision failures (no fp16 measurement)",
          "Strategies that bound the stream (Peri-LN, LayerNorm Scaling, Post-LN) leave more fp16 headroom than "
          "Pre-LN.",
          "fp16_headroom", Rule(">", 0.0, "more headroom than Pre-LN: its largest activation sits further below "
                                          "fp16's max 65504 (a positive difference in decades)"),
          None, zoo=("peri-ln", "lns", "post-ln"), reference="pre-ln", real=(),
          note="real models: their own headroom in decades (< 0: they overflow fp16), uncontrolled evidence "
               "with no interval"),
)
