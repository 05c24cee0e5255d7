"""Model surgery: Pre-LN -> Pre-RMSNorm / Pre-CRMSNorm conversion (same function) and LN removal."""
from __future__ import annotations

from interp.surgery.convert import to_crmsnorm, to_rmsnorm

__all__ = ["to_rmsnorm", "to_crmsnorm"]
