"""One row per model: is it fp16-safe, where does it overflow, and what do bf16, fp16 and int8 cost in loss?

Reads the Precision collector's table (per site) and, when there, the end-to-end runs (runs.py). fp16-safe means
the fp16 run stayed finite on every real token and no site value reached fp16's overflow threshold (|x| ≥ 65520:
the site statistics may cover tokens the run did not, e.g. `check`'s first `run_tokens`); without a run it rests
on the site statistics alone. `fp16_evidence` says which decided.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from interp.precision.formats import BF16_MAX, FP16_MAX

COLUMNS = ["model", "abs_max", "abs_max_at", "fp16_headroom", "bf16_headroom", "fp16_safe", "fp16_evidence",
           "fp16_overflow_at", "delta_bf16", "delta_fp16", "delta_int8", "top1_bf16", "top1_fp16", "top1_int8",
           "max_int8_token_error", "n_outlier_features"]


def _site_summary(g: pd.DataFrame) -> dict:
    i = g["abs_max"].to_numpy().argmax()
    top = g.iloc[i]
    feats = g["n_outlier_features"].to_numpy(dtype=float)
    return {"abs_max": float(top["abs_max"]), "abs_max_at": f"{top['hook']} (layer {int(top['layer'])})",
                "fp16_headroom": FP16_MAX / float(top["abs_max"]) if top["abs_max"] > 0 else np.inf,
                "bf16_headroom": BF16_MAX / float(top["abs_max"]) if top["abs_max"] > 0 else np.inf,
                "site_overflow": bool((g["frac_fp16_overflow"] > 0).any()),
                "max_int8_token_error": float(g["int8_tensor_token_error"].max()),
                "n_outlier_features": int(np.nanmax(feats)) if np.isfinite(feats).any() else 0}


def overflow_place(r: pd.Series) -> str:
    """'hook, layer ℓ, position p ('token')' for a run row that overflowed."""
    if r["status"] != "overflow":
        return ""
    where = r["first_hook"] or r["first_module"] or "the logits"
    if r["position"] >= 0:
        where += f", position {int(r['position'])} ({r['token']!r})"
    return where


def verdicts(sites: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The per-model verdict table (COLUMNS) from the collector's `precision` table and optional runs."""
    rows = []
    for model, g in sites.groupby("model", sort=False):
        s = _site_summary(g)
        r = dict(model=model, **{k: v for k, v in s.items() if k != "site_overflow"})
        run = runs[runs["model"] == model].set_index("format") if runs is not None and len(runs) else None
        for fmt, key in (("bf16", "bf16"), ("fp16", "fp16"), ("int8", "int8")):
            ok = run is not None and fmt in run.index
            r[f"delta_{key}"] = float(run.loc[fmt, "delta_loss"]) if ok else np.nan
            r[f"top1_{key}"] = float(run.loc[fmt, "top1_agreement"]) if ok else np.nan
        if run is not None and "fp16" in run.index and run.loc["fp16", "status"] != "error":
            row = run.loc["fp16"]
            if row["status"] == "ok" and s["site_overflow"]:  # finite on the run's tokens, not on all of them
                r.update(fp16_safe=False, fp16_overflow_at=s["abs_max_at"],
                         fp16_evidence="site statistics (the fp16 run stayed finite on its tokens)")
            else:
                r.update(fp16_safe=row["status"] == "ok", fp16_evidence="end-to-end fp16 run",
                         fp16_overflow_at=overflow_place(row))
        else:
            why = "the fp16 run failed" if run is not None and "fp16" in run.index else "no fp16 run"
            r.update(fp16_safe=not s["site_overflow"], fp16_evidence=f"site statistics only ({why})",
                     fp16_overflow_at="" if not s["site_overflow"] else s["abs_max_at"])
        rows.append(r)
    return pd.DataFrame(rows, columns=COLUMNS)
