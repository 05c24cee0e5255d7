"""benchmarks/main_job.py: each CPU keeps its own entry in the results file (its seconds are judged against a
fixed budget, which only means something for the CPU that ran them)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from main_job import by_cpu  # noqa: E402


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
