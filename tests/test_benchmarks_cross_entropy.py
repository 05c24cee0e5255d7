"""benchmarks/cross_entropy.py: both forms are timed on the same logits, and must give the same values."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cross_entropy  # noqa: E402


def test_a_row_times_both_forms_on_the_same_logits():
    row = cross_entropy.bench(70000, 40, repeats=2)
    assert row["vocab"] == 70000 and row["tokens"] == 40 and row["same values"] and row["repeats"] == 2
    assert len(row["chunked/whole (cpu, 95% CI)"]) == 2 and row["chunked/whole (cpu, median)"] > 0


def test_forms_that_disagree_stop_the_script(monkeypatch):
    import interp.collectors.objective as O
    monkeypatch.setattr(O, "token_ce", lambda x, y: O.F.cross_entropy(x, y, reduction="none") + 1e-6)
    with pytest.raises(SystemExit, match="differ"):
        cross_entropy.bench(5000, 30, repeats=1)
