"""interp.analysis.training_logs: what a claim says when a seed's training log is missing."""
import math

import pandas as pd

from interp.analysis.subjects import Subject
from interp.analysis.training_logs import bstat_fluctuation, grad_spike_rate


def test_a_seed_without_a_log_is_named_as_missing_not_as_not_finite():
    """A seed with no steps.parquet read '1 of 3 seeds not finite: no interval', as if its rate were infinite."""
    spikes = pd.DataFrame({"model": ["a", "a.seed1"], "spikes": [2, 4], "steps": [1000, 1000]})
    est = grad_spike_rate({"log_spikes": spikes}, Subject("a", ("a", "a.seed1", "a.seed2")))
    assert est.value == 3.0 and not est.has_interval  # the mean of the two logged seeds (2 and 4 per 1000 steps)
    assert est.method == "1 of 3 models without a training log (a.seed2): no interval"
    bstat = pd.DataFrame({"model": ["p", "p.seed1"], "fluctuation": [0.1, 0.3]})
    est = bstat_fluctuation({"log_bstat": bstat}, Subject("p", ("p", "p.seed1")), Subject("q", ("q", "q.seed1")))
    assert math.isnan(est.value) and "2 of 4 models without batch-statistic telemetry (q, q.seed1)" in est.method


def test_a_non_finite_rate_keeps_its_own_reason():
    spikes = pd.DataFrame({"model": ["a", "a.seed1"], "spikes": [2, 4], "steps": [1000, 0]})  # 0 steps: NaN rate
    est = grad_spike_rate({"log_spikes": spikes}, Subject("a", ("a", "a.seed1")))
    assert est.method == "1 of 2 seeds not finite: no interval"
