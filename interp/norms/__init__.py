"""Normalization modules, one concept per file, each hookable with TransformerLens's hook meanings.

`make_norm(kind, d, **kwargs)` builds one by name; `NORMS` maps names to classes.
"""
from __future__ import annotations

from interp.norms.adaptive import AdaLayerNorm
from interp.norms.base import Norm
from interp.norms.batchstat import PowerNorm, UnifiedNorm
from interp.norms.elementwise import DyT, Identity, TDLayerNorm
from interp.norms.tokenwise import CRMSNorm, FakeLN, LayerNorm, RMSNorm

NORMS: dict[str, type[Norm]] = {
    "layernorm": LayerNorm,
    "rmsnorm": RMSNorm,
    "crmsnorm": CRMSNorm,
    "powernorm": PowerNorm,
    "unified": UnifiedNorm,
    "dyt": DyT,
    "tdln": TDLayerNorm,
    "adaln": AdaLayerNorm,
    "fakeln": FakeLN,
    "identity": Identity,
}


def make_norm(kind: str, d: int, **kwargs) -> Norm:
    """Build the norm called `kind` over width `d`; unknown names raise one error naming the valid choices."""
    if kind not in NORMS:
        raise ValueError(f"unknown norm kind {kind!r}; choose one of: {', '.join(NORMS)}")
    return NORMS[kind](d, **kwargs)


__all__ = ["NORMS", "Norm", "make_norm", "LayerNorm", "RMSNorm", "CRMSNorm", "FakeLN", "PowerNorm",
           "UnifiedNorm", "DyT", "TDLayerNorm", "AdaLayerNorm", "Identity"]
