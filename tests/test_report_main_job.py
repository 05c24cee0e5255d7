"""The main job's plan: which real models the default measures, the --full option, and the order of its tasks."""
import subprocess
import sys
import tempfile

from interp.report.job_pool import run_tasks
from interp.report.main_job import REACH_MODELS, REAL_MODELS, longest_first, task_cost


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
               ("claims",), ("real", "smollm2-135m"), ("zoo", "lns.seed1")])
    order = longest_first(labels)
    costs = [task_cost(labels[i]) for i in order]
    assert costs == sorted(costs, reverse=True)           # brute-force check of the order
    assert [labels[i] for i in order][0] == ("real", "gemma-3-270m")
    zoo = [labels[i] for i in order if labels[i][0] == "zoo"]
    assert zoo == [("zoo", "lns.seed1"), ("zoo", "a"), ("zoo", "b")]   # a skip claim's subject first; ties in order
    # on two workers, the simulated finish time of longest-first is no later than that of the given order
    def makespan(seq):
        w = [0.0, 0.0]
        for i in seq:
            w[w.index(min(w))] += task_cost(labels[i])
        return max(w)
    assert makespan(order) <= makespan(range(len(labels)))
    assert run_tasks([(pow, (2, k)) for k in order], workers=1) == [2 ** k for k in order]


def test_deferred_templates_write_what_plotly_writes():
    """Figures built inside deferred_templates() (render_html) and written by figure_html give plotly's own HTML for
    the same figures built the usual way: _style's plotly_white, a template set by update_layout after traces
    (subplots), and no template at all (plotly's default)."""
    import re

    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from interp.report import figures as F

    df = pd.DataFrame({"model": ["a", "a", "b", "b"], "depth": [0, 1, 0, 1], "variance": [1.0, 2.0, 1.5, 4.0]})

    def build():
        styled = F._style(F._lines(df, "depth", "variance", {}), "t", "x", "y", log_y=True)
        sub = make_subplots(rows=1, cols=2)
        sub.add_trace(go.Scatter(x=[0, 1], y=[1, 2]), row=1, col=2)
        sub.update_xaxes(title_text="x")
        sub.update_layout(template="plotly_white", height=300)
        plain = go.Figure(go.Bar(x=["a"], y=[1]))
        plain.update_layout(title="plain")
        return [styled, sub, plain]

    def html(fig, write):
        h = write(fig, full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", h)

    want = [html(f, lambda f, **kw: f.to_html(**kw)) for f in build()]
    with F.deferred_templates():
        got = [html(f, F.figure_html) for f in build()]
    assert got == want
    assert '"template"' in want[2] and go.Figure().to_dict()["layout"].get("template") is not None  # restored


def test_render_takes_the_claims_late_and_places_them_first():
    """render_html with claims given as a function (the main job evaluates them on a worker meanwhile) writes the
    same page as with the evaluated table, the claims section first, and calls the function once."""
    import re

    import pandas as pd

    from interp.report import render_html
    from interp.report.claims import evaluate
    cards = pd.DataFrame([{"model": "pre-ln", "family": "zoo", "strategy": "pre-ln", "placement": "pre",
                           "norm_kind": "layernorm", "n_layers": 2, "d_model": 8}])
    stream = pd.DataFrame({"model": "pre-ln", "depth": [0, 1, 2], "variance": [1.0, 2.0, 4.0]})
    tables = {"cards": cards, "stream": stream}
    claims = evaluate(tables)
    calls = []

    def late():
        calls.append(1)
        return claims

    norm = lambda h: re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{4}-\d\d-\d\d \d\d:\d\d UTC",
                            "X", h)
    now, later = render_html(tables, ["t"], claims=claims), render_html(tables, ["t"], claims=late)
    assert norm(now) == norm(later) and calls == [1]
    assert later.index('id="claims"') < later.index('id="models"')
