"""The precision part of the main job (`interp report --default`): kept cheap, its cost logged.

The site statistics ride on the main collector pass (the Precision collector in `forward_collectors`); this adds
only the end-to-end runs, on the first `max_tokens` tokens of the model's sample.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd

JOB_FORMATS = ("bf16", "fp16", "int8")


def job_runs(model, data, log: Callable[[str], None], max_tokens: int = 512, batch_size: int = 4) -> dict[str, pd.DataFrame]:
    """{"precision_runs": rows} for `model` on the first `max_tokens` tokens of `data`; logs what it cost."""
    from interp.precision.runs import precision_runs
    t = time.perf_counter()
    try:
        df = precision_runs(model, data, JOB_FORMATS, batch_size=batch_size, max_tokens=max_tokens, progress=False)
    except ValueError as e:
        log(f"{model.card.name}: no precision runs ({str(e).splitlines()[0]})")
        return {}
    over = df[df["status"] != "ok"]
    what = "; ".join(r.what if r.status == "error" else
                     f"{r.format} {r.status} at {r.first_hook or r.first_module or 'the output'}"
                     for r in over.itertuples()) or "all finite"
    log(f"{model.card.name}: bf16 / fp16 / int8 runs on {int(df['n_tokens'].max())} tokens in "  # a failed run counts fewer
        f"{time.perf_counter() - t:.1f} s ({what})")
    return {"precision_runs": df}
