"""Inference cost measured side by side in one run (Pre-RMSNorm/CRMSNorm §5; Unified Norm §5): forward passes
of several variants interleaved round by round, so load on the machine hits every variant alike.

  speedup  median time of the reference variant / median time of the variant − 1 (0.1 = 10 % faster), with a
           percentile bootstrap over the timing rounds (the rounds are the paired unit).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from interp.analysis.intervals import Estimate, NotTestable, bootstrap_interval
from interp.analysis.registry import metric
from interp.analysis.subjects import Subject, need


def interleaved_times(fns: dict[str, Callable[[], object]], rounds: int = 20, reps: int = 2,
                      warmup: int = 2) -> pd.DataFrame:
    """Seconds per call of each fn (mean of `reps` calls), `rounds` rounds, the order rotated every round."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    rows = []
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            for _ in range(reps):
                fns[n]()
            rows.append({"variant": n, "round": r, "seconds": (time.perf_counter() - t0) / reps})
    return pd.DataFrame(rows)


def forward_timing(model_name: str, variants: dict[str, torch.nn.Module], tokens: torch.Tensor,
                   rounds: int = 20, reps: int = 2) -> pd.DataFrame:
    """The `timing` table: eval-mode forwards of each variant on `tokens`, interleaved (see above)."""
    def call(m):
        def f():
            with torch.no_grad():
                m(tokens)
        return f
    for m in variants.values():
        m.eval()
    return interleaved_times({k: call(m) for k, m in variants.items()}, rounds, reps).assign(model=model_name)


def speedup_from(times: pd.DataFrame, variant: str, reference: str) -> Estimate:
    """median(reference)/median(variant) − 1 with a bootstrap over rounds."""
    w = times.pivot_table(index="round", columns="variant", values="seconds", aggfunc="first")
    if variant not in w or reference not in w:
        raise NotTestable(f"no timing of {variant} against {reference} in this run")
    a, b = w[variant].to_numpy(), w[reference].to_numpy()

    def f(idx):
        sa, sb = (a, b) if idx is None else (a[idx], b[idx])
        return float(np.median(sb) / np.median(sa) - 1)
    lo, hi = bootstrap_interval(f, len(a))
    return Estimate(f(None), lo, hi, f"bootstrap over {len(a)} interleaved timing rounds", len(a),
                    detail=f"median forward {np.median(a) * 1e3:.2f} ms vs {np.median(b) * 1e3:.2f} ms")


@metric("speedup", "median forward time of the reference variant / of the variant − 1, eval mode, interleaved "
        "rounds in one process", "Pre-RMSNorm §5; Unified Norm §5 (inference speed)", "fraction faster")
def speedup(t, subject: Subject, ref: Subject | None = None, variant: str = "", reference: str = ""):
    """Inference speed-up of `variant` over `reference`, timed on the subject's seed-0 model."""
    rows = need(t, "timing", subject.models[:1], "inference timing")
    return speedup_from(rows, variant, reference)


