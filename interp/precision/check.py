"""`check(model, data)`: everything the suite says about one model's precision safety, in one call.

The Precision collector on `data` (site statistics, one fp32 pass) and the end-to-end runs on the first
`run_tokens` tokens of it (fp16 on this CPU is the slow part: keep that small), then the verdict row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from interp.precision.runs import DEFAULT_FORMATS, precision_runs
from interp.precision.verdict import verdicts


@dataclass
class PrecisionCheck:
    """The tables of one model: `sites` (collector), `outliers` (LLM.int8() features), `runs`, `verdict`;
    `collected` is the collector's `Results` (card, meta, mergeable state)."""

    sites: pd.DataFrame
    outliers: pd.DataFrame
    runs: pd.DataFrame
    verdict: pd.DataFrame
    collected: Any = None

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"precision": self.sites, "precision_outliers": self.outliers, "precision_runs": self.runs}

    def results(self):
        """A `Results` holding every table (the runs too, when there are any): `.save(dir)` writes what
        `interp report DIR` reads."""
        from interp.collectors.results import Results
        c = self.collected
        tables = {k: v for k, v in self.tables().items() if k != "precision_runs" or len(v)}
        return Results(tables=tables, card=c.card, meta=dict(c.meta), states=c.states)


def check(model, data, formats: tuple[str, ...] = DEFAULT_FORMATS, batch_size: int = 4,
          max_tokens: int | None = None, run_tokens: int | None = 512, linear: str = "fp32-accumulate",
          progress: bool = False) -> PrecisionCheck:
    """Collect site statistics on `data` (at most `max_tokens`) and run `formats` end to end on the first
    `run_tokens` tokens (None: all); `formats=()` skips the runs."""
    if run_tokens is not None and (isinstance(run_tokens, bool) or not isinstance(run_tokens, int) or run_tokens < 1):
        raise ValueError(f"run_tokens must be a whole number of at least 1 (got {run_tokens!r}); None runs on all "
                         "the data")
    import interp.collectors as C
    from interp.collectors import Precision
    res = C.collect(model, data, [Precision()], batch_size=batch_size, max_tokens=max_tokens, progress=progress)
    runs = pd.DataFrame()
    if formats:
        budget = run_tokens if max_tokens is None else min(run_tokens or max_tokens, max_tokens)
        runs = precision_runs(model, data, formats, batch_size=batch_size, max_tokens=budget, linear=linear,
                              progress=progress)
    return PrecisionCheck(res["precision"], res["precision_outliers"], runs,
                          verdicts(res["precision"], runs if len(runs) else None), res)
