"""The main job's plan: which real models the default measures, the --full option, and the order of its tasks."""
import subprocess
import sys
import tempfile

from interp.report.job_pool import run_tasks
from interp.report.main_job import REACH_MODELS, REAL_MODELS, TASK_COST, ZOO_TASK_COST, longest_first


def test_default_models_are_the_claims_real_subjects_and_full_adds_the_reach_models():
    from interp.models.registry import REGISTRY
    placements = {REGISTRY[n].placement for n in REAL_MODELS}
    assert {"pre", "peri", "post"} <= placements          # Pre-RMSNorm, Peri-LN and a Post-LN encoder
    assert REAL_MODELS[-1] == "minilm-l6"                  # --small keeps the last one: the smallest
    assert not set(REAL_MODELS) & set(REACH_MODELS) and set(REACH_MODELS) == {"qwen2.5-0.5b", "mpnet-base"}


def test_full_without_default_is_a_one_line_error():
    with tempfile.TemporaryDirectory() as cwd:
        p = subprocess.run([sys.executable, "-m", "interp.cli", "report", "--full"], capture_output=True, text=True,
                           timeout=300, cwd=cwd)
    assert p.returncode != 0 and "--default" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_tasks_go_to_the_workers_longest_first():
    labels = ([("zoo", "a"), ("real", "minilm-l6"), ("zoo", "b"), ("dynamics",), ("real", "gemma-3-270m"),
               ("claims",), ("real", "smollm2-135m")])
    order = longest_first(labels)
    costs = [TASK_COST.get(labels[i][-1], ZOO_TASK_COST) if labels[i][0] != "zoo" else ZOO_TASK_COST for i in order]
    assert costs == sorted(costs, reverse=True)           # brute-force check of the order
    assert [labels[i] for i in order][0] == ("real", "gemma-3-270m")
    zoo = [labels[i] for i in order if labels[i][0] == "zoo"]
    assert zoo == [("zoo", "a"), ("zoo", "b")]             # ties keep the given order
    # on two workers, the simulated finish time of longest-first is no later than that of the given order
    def makespan(seq):
        w = [0.0, 0.0]
        for i in seq:
            w[w.index(min(w))] += TASK_COST.get(labels[i][-1], ZOO_TASK_COST) if labels[i][0] != "zoo" else ZOO_TASK_COST
        return max(w)
    assert makespan(order) <= makespan(range(len(labels)))
    assert run_tasks([(pow, (2, k)) for k in order], workers=1) == [2 ** k for k in order]
