"""benchmarks/main_job.py: each CPU keeps its own entry in the results file (its seconds are judged against a
fixed budget, which only means something for the CPU that ran them); the per-step breakdown adds up the log."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from main_job import by_cpu, step_kind, step_seconds  # noqa: E402


def test_first_run_is_its_cpus_entry():
    assert by_cpu(None, "A (AVX2)", {"warm": {"wall_s": 1.0}}) == {"A (AVX2)": {"warm": {"wall_s": 1.0}}}


def test_earlier_form_becomes_the_entry_of_its_recorded_cpu():
    old = {"machine": {"cpu": "Old CPU"}, "date": "d0", "command": "python old",
           "results": {"warm": {"wall_s": 89.0}, "cold": {"wall_s": 112.0}, "commit": "c0"}}
    res = by_cpu(old, "New CPU (AVX2)", {"warm": {"wall_s": 300.0}})
    assert set(res) == {"Old CPU", "New CPU (AVX2)"}
    assert res["Old CPU"]["warm"]["wall_s"] == 89.0 and res["Old CPU"]["date"] == "d0"
    assert res["New CPU (AVX2)"]["warm"]["wall_s"] == 300.0


def test_a_rerun_replaces_only_its_own_cpu():
    old = {"machine": {"cpu": "B"}, "results": {"A": {"warm": {"wall_s": 1.0}}, "B": {"warm": {"wall_s": 2.0}}}}
    res = by_cpu(old, "B", {"warm": {"wall_s": 3.0}})
    assert res == {"A": {"warm": {"wall_s": 1.0}}, "B": {"warm": {"wall_s": 3.0}}}


def test_a_steps_kind_drops_its_counts_but_keeps_names_with_digits():
    assert step_kind("forward collectors on 1130 tokens") == "forward collectors"
    assert step_kind("step-0 gradient norms of 15 models") == "step-0 gradient norms of N models"
    assert step_kind("MDLM bound at 11 values of t (NELBO 5.758 ± 0.105) and γ(t) of 25 norms") == \
        "MDLM bound at N values of t and γ(t) of N norms"
    assert step_kind("Pre-LN → RMSNorm conversion checked in float64") == "Pre-LN → RMSNorm conversion checked in float64"
    assert step_kind("bf16 / fp16 / int8 runs on 254 tokens") == "bf16 / fp16 / int8 runs"


def test_step_breakdown_sums_each_step_per_real_model_and_over_the_zoo():
    tasks = {"real smol": 9.0, "zoo a": 1.0, "zoo b": 1.0, "claims": 2.0}
    steps = [
        {"at_s": 1.0, "model": "smol", "step": "forward collectors on 1148 tokens", "seconds": 3.0},
        {"at_s": 2.0, "model": "a", "step": "forward collectors on 2048 tokens", "seconds": 0.5},
        {"at_s": 3.0, "model": "b", "step": "forward collectors on 1024 tokens", "seconds": 0.2},
        {"at_s": 4.0, "model": "smol", "step": "bf16 / fp16 / int8 runs on 254 tokens", "seconds": 2.0},
        {"at_s": 4.0, "model": "smol", "step": "bf16 / fp16 / int8 runs", "seconds": 2.0},  # the same run, logged twice
        {"at_s": 5.0, "model": "claims", "step": "entropy neurons of 9 LN-removal models", "seconds": 1.5},
        {"at_s": 6.0, "model": "a", "step": "MDLM bound at 11 values of t (NELBO 5.7 ± 0.1)", "seconds": 1.0},
        {"at_s": 7.0, "model": "b", "step": "MDLM bound at 11 values of t (NELBO 4.8 ± 0.1)", "seconds": 0.5},
    ]
    assert step_seconds(steps, tasks) == {
        "forward collectors": {"smol": 3.0, "zoo (2 models)": 0.7},
        "bf16 / fp16 / int8 runs": {"smol": 2.0},
        "entropy neurons of N LN-removal models": {"claims": 1.5},
        "MDLM bound at N values of t": {"zoo (2 models)": 1.5},
        "all logged steps": {"smol": 5.0, "zoo (2 models)": 2.2, "claims": 1.5},
    }
