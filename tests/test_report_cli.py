"""`interp report` end to end on tiny zoo models with the real collectors, and its one-line errors."""
import json
import re
import subprocess
import sys
import tempfile

import pytest
import torch

import interp
import interp.collectors as C
from interp.report import tables_from_results

STRATS = ["pre-ln", "peri-ln", "post-ln", "no-norm"]


def run_cli(*args):
    """`interp report ARGS` in an empty working directory (the default output, report/index.html, is relative: a
    report the repository's own `make report` left there must not decide what these tests see)."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "interp.cli", "report", *map(str, args)], capture_output=True,
                              text=True, timeout=300, cwd=cwd, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Collections of four tiny zoo models, saved as `interp collect` saves them."""
    root = tmp_path_factory.mktemp("results")
    tokens = torch.randint(0, 128, (4, 24), generator=torch.Generator().manual_seed(0))
    results = []
    for s in STRATS:
        m = interp.zoo.build(s, n_layers=3, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, d_vocab=128)
        r = C.collect(m, tokens, progress=False)
        r.save(root / s)
        results.append(r)
    return root, results


def test_stream_table_matches_a_brute_force_variance(saved):
    # independent reference: the variance of the stream leaving each block, from run_with_cache
    _, results = saved
    m = interp.zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, d_vocab=128)
    tokens = torch.randint(0, 128, (4, 24), generator=torch.Generator().manual_seed(0))
    _, cache = m.run_with_cache(tokens)
    stream = tables_from_results(results)["stream"]
    pre = stream[stream["model"] == "pre-ln"].set_index("depth")["variance"]
    for l in range(3):
        x = cache[f"blocks.{l}.hook_resid_post"].double()
        assert pre[l + 1] == pytest.approx(x.var(unbiased=False).item(), rel=1e-6)


def test_cli_builds_report_from_saved_dirs(saved, tmp_path):
    root, _ = saved
    out = tmp_path / "r" / "index.html"
    p = run_cli(root, "-o", out)
    assert p.returncode == 0, p.stderr
    assert re.search(r"report: .*index\.html \(\d+\.\d MB, 4 model\(s\)\) generated in \d+\.\d s", p.stdout)
    html = out.read_text()
    for s in STRATS:
        assert f">{s}<" in html
    assert "Variance growth with depth" in html and "Missing: no ln_removal" in html
    assert not list(out.parent.glob(".*.tmp"))         # atomic: no temp file left behind
    # progress on stderr while it works (it printed nothing until the report was written): a line once the tables
    # are built (the loading bar shows only when loading takes over half a second; these four folders load faster)
    assert p.stderr.strip() == "tables of 4 model(s) built; now the claims and figures", p.stderr


def test_cli_missing_dir(tmp_path):
    p = run_cli(tmp_path / "nope")
    assert p.returncode != 0 and "does not exist" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_cli_empty_dir_is_an_empty_model_list(tmp_path):
    p = run_cli(tmp_path)
    assert p.returncode != 0 and "holds no saved results" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_cli()
    assert p.returncode != 0 and "no results directories given" in p.stderr


def test_cli_old_schema(saved, tmp_path):
    root, _ = saved
    import shutil
    old = tmp_path / "old"
    shutil.copytree(root / "pre-ln", old)
    idx = json.loads((old / "results.json").read_text())
    idx["schema_version"] = 0
    (old / "results.json").write_text(json.dumps(idx))
    p = run_cli(old, "-o", tmp_path / "x.html")
    assert p.returncode != 0 and "schema" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


def test_build_refuses_no_models(tmp_path):
    with pytest.raises(ValueError, match="no models"):
        interp.report.build([], tmp_path / "r.html")


def test_report_from_real_collectors_draws_in_browser(saved, tmp_path):
    from test_report_browser import dump_dom
    _, results = saved
    path = interp.report.build(results, tmp_path / "index.html")
    html = path.read_text()
    dom = dump_dom(path, tmp_path)
    n = html.count('class="plotly-graph-div"')
    assert n >= 5 and dom.count('class="plot-container plotly"') == n


def test_cli_a_file_given_as_results_is_one_line_and_nothing_is_written(saved, tmp_path, capsys):
    from interp.cli import main
    root, _ = saved
    f = tmp_path / "userfile.html"
    f.write_text("<p>mine</p>")
    assert main(["report", str(root), str(f), "-o", str(tmp_path / "x.html")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{f} is a file, not a results directory" in err[0] and "Errno" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userfile.html"]
    assert f.read_text() == "<p>mine</p>"


def test_two_results_of_one_model_are_refused_not_pooled(saved, tmp_path, capsys):
    """Two runs of one model (same card name) were pooled as one model's rows: the growth summary mixed var(1) of
    one run with var(L) of the other. Both the folders (CLI) and Results objects (build) are refused in one line."""
    import shutil

    from interp.cli import main
    root, results = saved
    shutil.copytree(root / "pre-ln", tmp_path / "again")
    assert main(["report", str(root / "pre-ln"), str(tmp_path / "again"), "-o", str(tmp_path / "x.html")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both hold results of model 'pre-ln'" in err[0] and str(tmp_path / "again") in err[0]
    with pytest.raises(ValueError, match="results 1 and 2 are both of model 'pre-ln'"):
        tables_from_results([results[0], results[0]])
    assert not (tmp_path / "x.html").exists()


def test_cli_report_names_its_folders_as_sources(saved, tmp_path):
    """The CLI loaded the folders itself and passed Results objects on, so its report said 'from 4 in-memory
    result(s)' instead of naming the folders it was made from."""
    root, _ = saved
    out = tmp_path / "index.html"
    p = run_cli(root, "-o", out)
    assert p.returncode == 0, p.stderr
    meta = next(ln for ln in out.read_text().splitlines() if ln.startswith('<p class="meta">Generated'))
    assert "in-memory" not in meta and meta.endswith("from no-norm, peri-ln, post-ln, pre-ln.</p>"), meta


@pytest.mark.parametrize("argv", [["--default", "RES"], ["RES", "--small"]])
def test_options_of_the_other_mode_are_refused_not_ignored(saved, tmp_path, monkeypatch, capsys, argv):
    """`interp report --default DIR` ran the main job and silently ignored DIR; `interp report DIR --small` built
    a full report of DIR, ignoring --small (as --full without --default is refused). Each: one line, no work."""
    import interp.report.main_job as job
    from interp.cli import main
    ran = []
    monkeypatch.setattr(job, "run_default", lambda **kw: ran.append(kw))
    out = tmp_path / "r.html"
    argv = [str(saved[0] / "pre-ln") if a == "RES" else a for a in argv]
    assert main(["report", *argv, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--default" in err[0], err
    assert not ran and not out.exists()


@pytest.mark.parametrize("extra, line", [
    ({"training": "steps.parquet"}, "extra['training'] is a str, not a DataFrame of report table 'training'"),
    ({"trainng": "TRAIN"}, "unknown report table 'trainng'; known: cards, stream"),
    ({"training": "NO_LOSS"}, "report table 'training' lacks column(s) ['loss']; it has ['losss', 'model', 'step']"),
    ({"sweep": "NO_MODEL"}, "report table 'sweep' lacks column(s) ['model']; it has ['diverged', 'lr']")])
def test_build_checks_extra_tables_before_any_work(saved, tmp_path, extra, line):
    """build(extra=...) passed a misspelt table name through silently (its section said 'Missing') and a table
    without a required column (TABLES) to the figures, which failed late with a bare KeyError ('loss'). Each is now
    one line naming the table and column, raised before anything is loaded, and no file is written."""
    import pandas as pd
    frames = {"TRAIN": pd.DataFrame(dict(model=["pre-ln"], step=[1], loss=[3.0])),
              "NO_LOSS": pd.DataFrame(dict(model=["pre-ln"], step=[1], losss=[3.0])),
              "NO_MODEL": pd.DataFrame(dict(lr=[1e-3], diverged=[False]))}
    extra = {k: frames.get(v, v) for k, v in extra.items()}
    root, _ = saved
    with pytest.raises((ValueError, TypeError)) as e:
        interp.report.build([root / "pre-ln"], tmp_path / "r.html", extra=extra)
    assert str(e.value).startswith(line) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_every_column_the_producers_give_is_documented_in_tables():
    """interp.report.TABLES documents each canonical table's columns, but the Models table showed an undocumented
    `objective`, the largest-activations table `massive`, the ablation table `depth` and `dims`, and the precision
    table six columns it did not list.
    Reference: the tables the main job's own collectors, attribution and adapters produce on a tiny model."""
    from interp.report.main_job import attribution_tables, costly_collectors, forward_collectors
    from interp.report.tables import TABLES
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, d_vocab=128).eval()
    toks = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    r = C.collect(m, toks, collectors=forward_collectors(), progress=False)
    r.tables.update(C.collect(m, toks, collectors=costly_collectors(), progress=False).tables)
    t = tables_from_results([r])
    t.update(attribution_tables(m, toks, lambda s: None, example=True))
    from interp.analysis.ablation import ablation_per_sequence
    low = C.MassiveActivations(abs_threshold=1e-6, ratio=2.0)  # thresholds a tiny model passes: something to ablate
    C.collect(m, toks, collectors=[low], progress=False)
    t.update(ablation_per_sequence(low, m, toks))
    assert {"cards", "stream", "massive", "outliers", "precision", "gradients", "skip", "logit_lens", "ablation",
            "seq_ablation"} <= set(t)
    undocumented = {k: sorted(set(v.columns) - set(TABLES[k])) for k, v in t.items()}
    assert {k: v for k, v in undocumented.items() if v} == {}
