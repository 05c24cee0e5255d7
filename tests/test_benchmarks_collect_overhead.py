"""benchmarks/collect_overhead.py: the split of a collect's cost into a per-batch ratio and a fixed cost per run,
and rows that keep the CPU they were measured on through a merge.

The reference is constructed timings: each round's plain forward costs b seconds a batch, a collect r · b a batch
plus a fixed F, over n and over N batches; the split must give back r and F in every round.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from collect_overhead import per_batch  # noqa: E402
from record import kept_rows, row_key  # noqa: E402


def rounds(b: np.ndarray, r: float, fixed_s: float, n: int, n_long: int) -> dict:
    times = {"plain": n * b, "collect": n * b * r + fixed_s, "plain_long": n_long * b,
             "collect_long": n_long * b * r + fixed_s}
    return {"split": {"cpu_s": {k: {"samples": list(v)} for k, v in times.items()}}}


@pytest.mark.parametrize("n,n_long", [(4, 8), (2, 10)])
def test_per_batch_recovers_ratio_and_fixed_cost(n, n_long):
    b = np.random.default_rng(n).uniform(0.07, 0.09, 15)  # a batch's plain forward, varying from round to round
    out = per_batch(rounds(b, 1.085, 0.008, n, n_long), n, n_long)
    assert out["collect/plain per further batch (cpu, median)"] == pytest.approx(1.085, rel=1e-9)
    assert out["fixed cost per run (cpu ms, median)"] == pytest.approx(8.0, rel=1e-6)
    lo, hi = out["fixed cost per run (cpu ms, 95% CI)"]
    assert lo == pytest.approx(8.0, abs=1e-5) and hi == pytest.approx(8.0, abs=1e-5)
    assert out["batches_long"] == n_long


def test_per_batch_sees_a_fixed_cost_the_whole_run_ratio_hides():
    # the same whole-run ratio (1.11 over 4 batches) from two different splits: no fixed cost, or 3 ms of it
    b = np.full(9, 0.08)
    flat = per_batch(rounds(b, 1.11, 0.0, 4, 8), 4, 8)
    fixed = per_batch(rounds(b, 1.11 - 0.003 / (4 * 0.08), 0.003, 4, 8), 4, 8)
    assert flat["collect/plain per further batch (cpu, median)"] == pytest.approx(1.11)
    assert fixed["collect/plain per further batch (cpu, median)"] == pytest.approx(1.1006, abs=1e-4)
    assert fixed["fixed cost per run (cpu ms, median)"] == pytest.approx(3.0, rel=1e-6)


@pytest.mark.parametrize("args, message", [(["--processes", "0"], "--processes 0"),
                                           (["--long-batches", "3"], "must exceed --time-batches 4")])
def test_bad_arguments_fail_with_one_line(args, message):
    import subprocess
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "collect_overhead.py"
    r = subprocess.run([sys.executable, str(script), *args, "--no-write"], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1]


def test_merge_keeps_each_cpu_row_apart():
    """A file written before rows named their CPU: its rows take the file's CPU; a row that names its own keeps it.
    One model measured on two CPUs gives two rows, and re-measuring on one CPU replaces only that CPU's row."""
    old = {"machine": {"cpu": "Old CPU"}, "command": "python old", "date": "2026-01-01",
           "results": {"zoo": {"collect/plain (cpu, median)": 1.2},
                       row_key("zoo", "New CPU (AVX2)"): {"model": "zoo", "machine": "New CPU (AVX2)", "date": "d2",
                                                         "collect/plain (cpu, median)": 1.05}}}
    rows = kept_rows(old)
    assert set(rows) == {"zoo on Old CPU", "zoo on New CPU (AVX2)"}
    assert rows["zoo on Old CPU"]["machine"] == "Old CPU" and rows["zoo on Old CPU"]["date"] == "2026-01-01"
    assert rows["zoo on New CPU (AVX2)"]["date"] == "d2" and rows["zoo on New CPU (AVX2)"]["model"] == "zoo"
    rows[row_key("zoo", "New CPU (AVX2)")] = {"collect/plain (cpu, median)": 1.04}
    assert rows["zoo on Old CPU"]["collect/plain (cpu, median)"] == 1.2 and len(rows) == 2


def test_recorded_rows_reads_a_results_file_back_by_row_and_nothing_when_absent(tmp_path, monkeypatch):
    import json

    import record
    monkeypatch.setattr(record, "RESULTS", tmp_path)
    assert record.recorded_rows("none_here") == {}
    (tmp_path / "x.json").write_text(json.dumps({"machine": {"cpu": "C"}, "command": "python x", "date": "d",
                                                 "results": {"m on C": {"model": "m", "machine": "C", "v": 1}}}))
    assert record.recorded_rows("x") == {"m on C": {"model": "m", "machine": "C", "command": "python x", "date": "d",
                                                    "v": 1}}


ZEN1 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n\n" \
       "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\n"
ZEN3 = ZEN1.replace(": 23\n", ": 25\n", 1)


def test_two_cpus_of_one_name_get_rows_of_their_own():
    """A virtual machine named both an EPYC of family 23 (Zen 1) and one of family 25 (Zen 3) 'AMD EPYC', with the
    same vector instructions, so a merge put one's timings over the other's row. The label now carries the x86
    family / model of the first processor (hand-written cpuinfo); a record made before it was kept keeps its label."""
    from record import cpu_generation, machine_label
    assert cpu_generation(ZEN1) == "family 23 model 1" and cpu_generation(ZEN3) == "family 25 model 1"
    assert cpu_generation("model name\t: Apple M2\n") == ""
    one = machine_label({"cpu": "AMD EPYC", "isa": "AVX2", "generation": cpu_generation(ZEN1)})
    three = machine_label({"cpu": "AMD EPYC", "isa": "AVX2", "generation": cpu_generation(ZEN3)})
    assert one == "AMD EPYC (AVX2, family 23 model 1)" and three == "AMD EPYC (AVX2, family 25 model 1)"
    assert row_key("zoo", one) != row_key("zoo", three)
    assert machine_label({"cpu": "AMD EPYC", "isa": "AVX2"}) == "AMD EPYC (AVX2)"  # an earlier record's row


def test_paired_ratio_pairs_rounds_and_groups_processes():
    """collect = r_p · trunk in every round of process p (trunk varying from round to round): the ratio of each
    round is r_p, the median is that of the rounds, and the interval resamples the processes (a one-process run
    gives the rounds' own interval)."""
    from collect_overhead import paired_ratio
    trunk = np.random.default_rng(3).uniform(0.5, 0.9, 12)
    r = np.repeat([1.02, 1.05, 1.08], 4)  # three processes of four rounds each, pooled in process order
    t = {"cpu_s": {"collect": {"samples": list(trunk * r)}, "trunk": {"samples": list(trunk)}}}
    out = paired_ratio(t, "collect", "trunk", 3)
    assert out["median"] == pytest.approx(1.05)
    lo, hi = out["ci95"]
    assert 1.02 - 1e-9 <= lo <= 1.05 <= hi <= 1.08 + 1e-9 and hi - lo > 0.01  # the processes differ: a wide interval
    one = paired_ratio({"cpu_s": {"collect": {"samples": list(trunk * 1.07)}, "trunk": {"samples": list(trunk)}}},
                       "collect", "trunk", 1)
    assert one["median"] == pytest.approx(1.07) and one["ci95"] == pytest.approx([1.07, 1.07], abs=1e-6)
