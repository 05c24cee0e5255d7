"""The claim entries, one file per seed paper; importing this package registers them all."""
from interp.report.claims.entries import (  # noqa: F401
    curse_of_depth,
    deepnet,
    dyt,
    ln_free,
    massive_activations,
    mix_ln,
    peri_ln,
    powernorm,
    precision,
    qk_norm,
    rmsnorm,
    td_ln,
    unified_norm,
)
