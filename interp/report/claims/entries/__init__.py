"""The claim entries, one file per seed paper; importing this package registers them all."""
from interp.report.claims.entries import (curse_of_depth, dyt, ln_free, massive_activations, mix_ln,  # noqa: F401
                                          peri_ln, powernorm, rmsnorm, td_ln, unified_norm)
from interp.report.claims.entries import deepnet, qk_norm  # noqa: F401,E402  (norms of 2022–2025 models)
from interp.report.claims.entries import deepnet, qk_norm  # noqa: F401,E402  (norms of 2022–2025 models)
