"""interp.analysis.precision: the fp16_headroom claim metric against hand computations."""
import math

import pandas as pd
import pytest

from interp.analysis.precision import fp16_headroom
from interp.analysis.subjects import Subject


def _table(peaks: dict[str, list[float]]) -> dict:
    return {"precision": pd.DataFrame([{"model": m, "site": f"s{i}", "abs_max": v}
                                       for m, vs in peaks.items() for i, v in enumerate(vs)])}


def test_headroom_is_log10_of_65504_over_the_largest_site():
    est = fp16_headroom(_table({"a": [10.0, 655.04, 3.0]}), Subject("a", ("a",)))
    assert est.value == pytest.approx(2.0)  # log10(65504 / 655.04)


def test_a_nan_site_leaves_no_headroom_to_claim():
    """pandas' max skipped a NaN site, so a model whose activations went NaN read the headroom of its finite
    sites (here 2 decades, with a t interval over the seeds) instead of an unknown one."""
    est = fp16_headroom(_table({"a": [655.04, math.nan], "a.seed1": [655.04, 1.0], "a.seed2": [65.504, 1.0]}),
                        Subject("a", ("a", "a.seed1", "a.seed2")))
    assert not est.has_interval and math.isnan(est.units[0])
