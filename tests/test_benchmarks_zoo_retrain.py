"""benchmarks/zoo_retrain.py: the summary of a re-trained zoo against hand-made manifests whose sums, changes and
seed spreads are worked out here; the budget verdict on both sides of its boundaries; an incomplete re-run refused."""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zoo_retrain as Z  # noqa: E402


def _rec(strategy, seed, cpu, loss, start="2026-12-03T10:00:00Z", end="2026-12-03T10:05:00Z"):
    return {"strategy": strategy, "seed": seed, "objective": "causal_lm", "status": "done", "steps": 2000,
            "tokens": 2048000, "final_val_loss": loss, "job_cpu_s": cpu, "job_wall_s": cpu + 10,
            "started_at": start, "finished_at": end, "fast_step": {"compiled": True}}


def _manifest(path: Path, models: dict) -> None:
    from interp.train.zoo_runner import zoo_cost
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"models": models, "zoo_cost": zoo_cost(models)}))


@pytest.fixture
def zoos(tmp_path, monkeypatch):
    monkeypatch.setattr("timing.cpu_probe", lambda: {"median": 0.1})
    shipped = {"pre-ln": _rec("pre-ln", 0, 500.0, 4.00), "pre-ln.seed1": _rec("pre-ln", 1, 510.0, 4.10),
               "dyt": _rec("dyt", 0, 520.0, 5.00)}
    rerun = {"pre-ln": _rec("pre-ln", 0, 200.0, 4.01, end="2026-12-03T10:04:00Z"),
             "pre-ln.seed1": _rec("pre-ln", 1, 220.0, 4.08, start="2026-12-03T10:04:00Z",
                                  end="2026-12-03T10:08:00Z"),
             "dyt": _rec("dyt", 0, 230.0, 5.00)}
    _manifest(tmp_path / "shipped", shipped)
    _manifest(tmp_path / "work" / "zoo", rerun)
    return tmp_path


def test_summary_sums_the_jobs_and_compares_with_the_shipped_losses(zoos):
    res = Z.summarise(zoos / "work", zoos / "shipped")
    assert res["cpu_s"] == 650.0 and math.isclose(res["cpu_hours"], 650 / 3600)
    assert res["elapsed_wall_s"] == 480.0                      # 10:00 to 10:08, jobs overlapping
    assert math.isclose(res["shipped_cpu_hours"], 1530 / 3600)
    sd = statistics.stdev([4.00, 4.10])                        # pre-ln's two shipped seeds; dyt has one
    rows = res["per_model"]
    assert math.isclose(rows["pre-ln"]["val_loss_change"], 0.01)
    assert math.isclose(rows["pre-ln.seed1"]["change_over_seed_sd"], 0.02 / sd)
    assert "change_over_seed_sd" not in rows["dyt"]
    v = res["val_loss_change"]
    assert math.isclose(v["median_abs"], 0.01) and math.isclose(v["max_abs"], 0.02) and v["models"] == 3
    assert math.isclose(v["max_abs_over_seed_sd"], 0.02 / sd) and math.isclose(v["median_seed_sd"], sd)
    assert res["verdict"] == "met"


def test_budget_verdict_on_both_sides_of_its_boundaries():
    assert Z.budget_verdict(Z.GOAL_CPU_H) == "met"
    assert Z.budget_verdict(Z.GOAL_CPU_H + 1e-9) == "about"
    assert Z.budget_verdict(Z.GOAL_CPU_H * Z.ABOUT) == "about"
    assert Z.budget_verdict(Z.GOAL_CPU_H * Z.ABOUT + 1e-9) == "not met"


def test_an_incomplete_re_run_is_refused_in_one_line(zoos):
    m = json.loads((zoos / "work" / "zoo" / "manifest.json").read_text())
    del m["models"]["dyt"]
    (zoos / "work" / "zoo" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SystemExit, match=r"1 of 3 shipped models not re-trained yet \(dyt\); run --train again"):
        Z.summarise(zoos / "work", zoos / "shipped")
    with pytest.raises(SystemExit, match="no .*manifest.json; train first"):
        Z.summarise(zoos / "nowhere", zoos / "shipped")


def test_claims_compare_verdicts_by_claim_and_model(zoos):
    def row(claim, model, verdict, value=0.5):
        return {"claim": claim, "model": model, "verdict": verdict, "value": value, "lo": 0.4, "hi": 0.6}
    assert Z.compare_claims(zoos / "work", {"pre-ln", "dyt"}) is None       # no main job run yet
    for tag, rows in (("shipped", [row("a", "pre-ln", "reproduced"), row("b", "pre-ln (seed 1)", "inconclusive"),
                                   row("a", "SmolLM2-135M", "reproduced"), row("c", "dyt", "reproduced")]),
                      ("retrained", [row("a", "pre-ln", "reproduced"), row("b", "pre-ln (seed 1)", "reproduced", 0.7),
                                     row("a", "SmolLM2-135M", "reproduced")])):
        (zoos / "work" / f"claims-{tag}").mkdir()
        (zoos / "work" / f"claims-{tag}" / "claims.json").write_text(json.dumps(rows))
    res = Z.compare_claims(zoos / "work", {"pre-ln", "dyt"})
    assert (res["zoo_rows"], res["zoo_rows_same_verdict"]) == (2, 1)        # ("c", "dyt") is in one file only
    assert (res["other_rows"], res["other_rows_same_verdict"], res["only_in_one"]) == (1, 1, 1)
    assert res["flips"] == [{"claim": "b", "model": "pre-ln (seed 1)", "shipped": "inconclusive",
                             "retrained": "reproduced", "value_shipped": 0.5, "interval_shipped": [0.4, 0.6],
                             "value_retrained": 0.7, "interval_retrained": [0.4, 0.6]}]
    assert Z.summarise(zoos / "work", zoos / "shipped")["claims"] == res
