"""TransformerLens-native results: `run_with_cache` returns an `ActivationCache` whose residual-stream helpers
(`accumulated_resid`, `decompose_resid`, `apply_ln_to_stack`, `logit_attrs`) give the right answer on interp's
unfolded models, and refuse, with the reason, where TransformerLens' assumptions do not hold."""
from __future__ import annotations

from interp.tl.cache import InterpActivationCache, UnsupportedByTransformerLens
from interp.tl.native import TransformerLensNative

__all__ = ["InterpActivationCache", "TransformerLensNative", "UnsupportedByTransformerLens"]
