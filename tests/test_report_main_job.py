"""The main job's plan: which real models the default measures, the --full option, and the order of its tasks."""
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import interp.data

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
    with F.deferred_templates(), F.deferred_templates():  # entered again inside one: the same figures
        assert [html(f, F.figure_html) for f in build()] == want
    assert go.Figure().to_dict()["layout"].get("template") is not None


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


# ---- what the main job may replace: its report, claims.json and results/<model> folders next to -o ----

ZOO = interp.data.DATA_DIR / "zoo"


def tree(root):
    """Every file under `root` with its bytes (what "left as it was" means)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def collect_cli(model, out, tmp_path, *extra):
    """`interp collect` as a user runs it: a results folder of `model` at `out` (32 tokens, one collector)."""
    import numpy as np

    from interp.cli import main
    np.save(tmp_path / "tokens.npy", np.arange(1, 65, dtype=np.int64) % 500)
    assert main(["collect", str(model), "--data", str(tmp_path / "tokens.npy"), "-o", str(out), "--max-tokens",
                 "32", "--collectors", "residual", "--batch-size", "2", "--quiet", *extra]) == 0


def one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_default_refuses_a_users_collect_output_and_claims_file_before_any_work(tmp_path, capsys):
    """`interp report --default` saves each model at <dir of -o>/results/<model> and writes <dir>/claims.json:
    an `interp collect` output there is refused without --force, a claims.json that is not a claims table even
    with it, each with one line naming it before anything is measured; the user's files stay byte for byte."""
    from interp.cli import main
    first = sorted(d.name for d in ZOO.iterdir() if (d / "config.json").is_file())[0]  # --small: the first 3
    out = tmp_path / "rep"
    collect_cli(ZOO / first, out / "results" / first, tmp_path)
    before = tree(out)
    assert main(["report", "--default", "--small", "-o", str(out / "index.html")]) == 1
    line = one_error(capsys)
    assert str(out / "results" / first) in line and "--force" in line and "interp collect" in line
    assert tree(out) == before
    (out / "results" / first).rename(tmp_path / "kept")
    for mine in ('{"mine": 1}\n', "[]\n", '[{"claim": "x"}]\n'):  # not a claims table as the job writes one
        (out / "claims.json").write_text(mine)
        before = tree(out)
        for force in ([], ["--force"]):
            assert main(["report", "--default", "--small", "-o", str(out / "index.html"), *force]) == 1
            line = one_error(capsys)
            assert str(out / "claims.json") in line and "refusing" in line
            assert tree(out) == before


@pytest.mark.parametrize("var,value", [("INTERP_THREADS", "0"), ("INTERP_THREADS", "two"),
                                       ("INTERP_JOB_WORKERS", "x"), ("INTERP_JOB_WORKERS", "-1")])
def test_default_names_a_bad_environment_value_before_any_work(tmp_path, capsys, monkeypatch, var, value):
    from interp.cli import main
    monkeypatch.setenv(var, value)
    assert main(["report", "--default", "--small", "-o", str(tmp_path / "index.html")]) == 1
    line = one_error(capsys)
    assert f"{var}={value!r}" in line and "whole number, at least 1" in line
    assert list(tmp_path.iterdir()) == []


def test_save_results_replaces_its_own_and_a_collect_output_only_with_force(tmp_path, capsys):
    from interp.collectors.results import Results
    from interp.outputs import OutputRefused
    from interp.report.main_job import job_wrote, save_results
    src = tmp_path / "src"
    collect_cli(ZOO / "pre-ln", src, tmp_path)
    res = Results.load(src)
    own = tmp_path / "results" / "own"
    save_results(res, own)
    save_results(res, own)                          # the job's own earlier result: replaced without --force
    assert job_wrote(own) and not job_wrote(src)
    users = tmp_path / "results" / "users"
    collect_cli(ZOO / "pre-ln", users, tmp_path)
    before = tree(users)
    with pytest.raises(OutputRefused, match="--force"):
        save_results(res, users)
    assert tree(users) == before
    save_results(res, users, force=True)            # --force: the collect output may go
    assert job_wrote(users)
    mine = tmp_path / "results" / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputRefused, match="refusing"):
        save_results(res, mine, force=True)         # never a folder that is not a results folder
    assert tree(mine) == {"notes.txt": b"keep"}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["mine", "own", "users"]


def test_default_with_force_replaces_a_collect_output_and_marks_its_own(tmp_path):
    """End to end on a one-model zoo: without --force the job refuses the collect output at results/pre-ln;
    with it, the job's result replaces it and is marked as the job's (so a later run may replace it)."""
    import json

    from interp.collectors.results import Results
    from interp.outputs import OutputRefused
    from interp.report.main_job import job_wrote, run_default
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "pre-ln").symlink_to(ZOO / "pre-ln")
    out = tmp_path / "rep"
    collect_cli(ZOO / "pre-ln", out / "results" / "pre-ln", tmp_path)
    before = tree(out)
    kw = dict(small=True, zoo_dir=zoo, real_models=(), workers=1)
    with pytest.raises(OutputRefused, match="--force"):
        run_default(out / "index.html", **kw)
    assert tree(out) == before
    run_default(out / "index.html", force=True, **kw)
    assert job_wrote(out / "results" / "pre-ln")
    assert Results.load(out / "results" / "pre-ln").meta["n_tokens"] > 32
    assert isinstance(json.loads((out / "claims.json").read_text()), list)
    assert sorted(p.name for p in out.iterdir()) == ["claims.json", "index.html", "results"]


def test_saved_results_rebuild_only_the_collector_sections_as_the_docs_say(tmp_path):
    """docs/report.md said `interp report report/results` rebuilds 'the page'; the folders hold the collectors'
    tables only (no DLA, lens, ablation, LN removal ...), so a rebuilt page lacks those sections."""
    from interp.report import load_dirs, tables_from_results
    from interp.report.main_job import collect_one
    m = interp.zoo.load(interp.data.DATA_DIR / "zoo" / "pre-ln").eval()
    collect_one(m, interp.data.heldout_tokens(2, 32), lambda s: None, tmp_path, batch_size=2, ablate=False,
                costly_items=1)
    t = tables_from_results(load_dirs([tmp_path]))
    assert {"stream", "massive", "gradients", "angular", "skip", "norm_scales", "precision", "attn_logits"} <= set(t)
    assert not {"dla_error", "logit_lens", "ablation", "ln_removal", "equivalence", "training"} & set(t)
    docs = (Path(__file__).parents[1] / "docs" / "report.md").read_text()
    assert "rebuilds the page" not in docs and "rebuilds the collectors' sections" in docs


@pytest.mark.parametrize("workers", [1, 2])  # 2: the claims are written by a worker while the page renders
def test_a_failed_render_leaves_the_earlier_report_and_claims_as_a_pair(tmp_path, monkeypatch, workers):
    """claims.json was written before the page rendered: a render that failed left a new claims.json beside the
    old report. Now both stay as they were, and no temporary file is left."""
    import json

    import interp.report
    from interp.report.main_job import run_default
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "pre-ln").symlink_to(ZOO / "pre-ln")
    out = tmp_path / "rep"
    kw = dict(small=True, zoo_dir=zoo, real_models=(), workers=workers, force=True)
    run_default(out / "index.html", **kw)
    claims = json.loads((out / "claims.json").read_text())
    (out / "claims.json").write_text(json.dumps(claims[:-1]))  # an earlier table, told apart from this run's
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(*a, **k):
        raise RuntimeError("render failed")
    monkeypatch.setattr(interp.report, "render_html", broken)
    with pytest.raises(RuntimeError, match="render failed"):
        run_default(out / "index.html", **kw)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_render_with_a_pool_builds_some_sections_there_and_writes_the_same_page():
    """render_html(pool=...) builds the ELSEWHERE sections on a worker process (the main job's idle one) and the
    page is the one built all here: same sections in the same order, same figures (plotly's div ids aside)."""
    import re
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from report_fixtures import tables

    from interp.report import render_html
    from interp.report.render import ELSEWHERE

    class Recording(ProcessPoolExecutor):
        def submit(self, fn, *args, **kw):
            submitted.append((fn.__name__, sorted(args[2])))
            return super().submit(fn, *args, **kw)

    submitted: list = []
    norm = lambda h: re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{4}-\d\d-\d\d \d\d:\d\d UTC",
                            "X", h)
    t = tables()
    here = render_html(t, ["t"])
    with Recording(1, mp_context=get_context("spawn")) as pool:
        there = render_html(t, ["t"], pool=pool)
    assert submitted == [("build_elsewhere", sorted(ELSEWHERE))]
    assert norm(there) == norm(here)
    sec = there[there.index('<section id="norm-scales">'):].split("</section>")[0]
    assert "Plotly.newPlot" in sec  # a section built on the worker holds its figure
