"""A bad input that needs no model is reported before the heavy libraries are imported.

Each case runs `interp.cli.main(argv)` in a fresh Python process (in a folder of the test's files) and checks its
exit code, its one stderr line, and that torch, transformers, transformer_lens, plotly and pandas were not imported
(importing them takes seconds; a mistyped path or option should fail at once). A behaviour test: no timing.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "transformer_lens", "plotly", "pandas")
CODE = ("import sys; from interp.cli import main; rc = main({argv!r}); "
        "print(rc, sorted(m for m in {heavy!r} if m in sys.modules))")
SUBCOMMANDS = ("attribute", "collect", "convert", "models", "precision", "remove-ln", "report", "strategies", "sweep",
               "train")


def run_cli(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, list[str], list[str]]:
    """(exit code, heavy modules imported, stderr lines) of `main(argv)` in a fresh process in `cwd`."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("INTERP_DEBUG", "INTERP_THREADS", "INTERP_JOB_WORKERS")}
    path = os.pathsep.join([str(REPO)] + ([base["PYTHONPATH"]] if base.get("PYTHONPATH") else []))
    r = subprocess.run([sys.executable, "-c", CODE.format(argv=argv, heavy=HEAVY)], cwd=cwd, capture_output=True,
                       text=True, timeout=300, env={**base, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env or {})})
    assert r.stdout.strip(), r.stderr
    rc, mods = r.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(rc), ast.literal_eval(mods), r.stderr.splitlines()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder with a user's file, an empty folder, an empty text file, a raw token file and another kind of
    interp output (a sweep folder: its marker names it)."""
    (tmp_path / "notes.txt").write_text("mine\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "tokens.bin").write_bytes(b"\0" * 8)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.csv").write_text("strategy,lr\n")
    (tmp_path / "sweep" / ".interp-output").write_text(json.dumps({"kind": "sweep"}))
    return tmp_path


REFUSED_FILE = "notes.txt exists and is not a folder; refusing to replace it: choose another output path"
NOT_RESULTS = "sweep is not empty and is an interp sweep, not an interp results; refusing to touch it: choose another output path"
NOT_CHECKPOINT = ("sweep is not empty and is an interp sweep, not an interp checkpoint; refusing to touch it: choose "
                  "another output path")
MISSING_MODEL = "model ./missing: no such file or folder"

CASES = [
    # report: the results folders and -o are checked before pandas (and the claims, models) load
    (["report", "missing", "-o", "r.html"], "results directory missing does not exist; run `interp collect` first"),
    (["report", "notes.txt", "-o", "r.html"],
     "notes.txt is a file, not a results directory; pass the folders written by `interp collect` (or a folder of them)"),
    (["report", "empty", "-o", "r.html"], "empty holds no saved results (results.json in it or in a subdirectory)"),
    (["report", "missing", "-o", "notes.txt"],
     "notes.txt exists and is not an interp HTML report; refusing to overwrite it: choose another path"),
    (["report", "-o", "r.html"],
     "no results directories given; pass one or more (from `interp collect`) or use --default"),
    (["report", "--full"], "--full adds the reach models to the main job: use it with --default"),
    (["report", "--default", "-o", "notes.txt"],
     "notes.txt exists and is not an interp HTML report; refusing to overwrite it: choose another path"),
    # precision
    (["precision", "./missing"], MISSING_MODEL),
    (["precision", "smollm2-135m", "--threads", "0"], "--threads must be at least 1 (got 0)"),
    (["precision", "smollm2-135m", "--data", "missing.txt"], "--data missing.txt: no such text file (one text per line), "
     "and not a corpus ('kjv', 'austen', a folder, 'hf:NAME')"),
    (["precision", "smollm2-135m", "--data", "blank.txt"], "--data blank.txt holds no text (every line is empty)"),
    (["precision", "smollm2-135m", "-o", "notes.txt"], REFUSED_FILE),
    (["precision", "smollm2-135m", "-o", "sweep"], NOT_RESULTS),
    # train
    (["train", "--zoo", "--threads", "0"], "--threads must be at least 1 (got 0)"),
    (["train"], "say what to train: --zoo (every strategy and seed of the plan) or one or more strategy names"),
    (["train", "--zoo", "--steps", "0"], "--steps must be ≥ 1 (got 0)"),
    (["train", "--zoo", "--workers", "0"], "--workers must be ≥ 1 (got 0)"),
    (["train", "pre-ln", "--seeds", "0"], "--seeds must be ≥ 1 (got 0)"),
    (["train", "--zoo", "--runs", "notes.txt"],
     "--runs notes.txt exists and is not a folder; give the folder the training state should go to"),
    (["train", "--zoo", "--out", "notes.txt/zoo"],
     "--out: notes.txt is a file, not a folder, so notes.txt/zoo cannot be written inside it; choose another output path"),
    # collect
    (["collect", "smollm2-135m", "--data", "missing.npy", "-o", "out"], "--data missing.npy: no such token file"),
    (["collect", "smollm2-135m", "--data", "kjv", "-o", "out", "--batch-size", "0"],
     "--batch-size must be at least 1 (got 0)"),
    (["collect", "smollm2-135m", "--data", "tokens.bin", "-o", "out"],
     "--data tokens.bin is a raw token file without a dtype; pass --token-dtype (uint16, int32, uint32 or int64: how it "
     "was written) or save a .npy instead"),
    (["collect", "smollm2-135m", "--data", "kjv", "-o", "out", "--token-dtype", "uint16"],
     "--token-dtype applies to raw .bin token files only; kjv is not one"),
    (["collect", "smollm2-135m", "--data", "kjv", "-o", "notes.txt"], REFUSED_FILE),
    (["collect", "smollm2-135m", "--data", "kjv", "-o", "sweep"], NOT_RESULTS),
    (["collect", "smollm2-135m", "--data", "kjv", "-o", "out", "--state-dir", "notes.txt"],
     "--state-dir notes.txt exists and is not a folder; choose another path"),
    # sweep
    (["sweep", "--threads", "0"], "--threads must be at least 1 (got 0)"),
    (["sweep", "--jobs", "0"], "--jobs must be at least 1 (got 0)"),
    (["sweep", "--clip", "0"], "--clip must be a finite number above 0 (got 0.0)"),
    (["sweep", "--lrs", "0"], "--lrs must be finite numbers above 0 and --seeds whole numbers ≥ 0, got '0' / (0,)"),
    (["sweep", "--out", "notes.txt"], "--out notes.txt exists and is not a folder; choose another path"),
    (["sweep", "--out", "empty/../sweep"],
     "--out empty/../sweep already holds a sweep; pass --resume to extend it or --force to replace it"),
    # attribute
    (["attribute", "./missing", "--out", "out"], MISSING_MODEL),
    (["attribute", "smollm2-135m", "--out", "notes.txt", "--target", "a", "--text", "b"], REFUSED_FILE),
    (["attribute", "smollm2-135m", "--out", "out", "--text", "b"],
     "say which logit to attribute: --target TEXT (one token) or --target-id ID"),
    (["attribute", "smollm2-135m", "--out", "out", "--target", "a"],
     "give the input as --text TEXT or --tokens ID,ID,... (one of them)"),
    (["attribute", "smollm2-135m", "--out", "out", "--target", "a", "--tokens", "1,x"],
     "--tokens must be comma-separated integer ids, got '1,x'"),
    (["attribute", "smollm2-135m", "--out", "out", "--target", "a", "--text", "b", "--neurons", "x"],
     "--neurons must be comma-separated layer numbers (0, 1, ...), got 'x'"),
    (["attribute", "smollm2-135m", "--out", "out", "--target", "a", "--text", "b", "--contrast", "c",
      "--contrast-id", "1"], "give --contrast or --contrast-id, not both"),
    # remove-ln
    (["remove-ln", "./missing", "--out", "out"], MISSING_MODEL),
    (["remove-ln", "gpt2", "--out", "out", "--lr", "0"], "--lr must be a finite number above 0 (got 0.0)"),
    (["remove-ln", "gpt2", "--out", "out", "--seq-len", "1"], "--seq-len must be at least 2 (got 1)"),
    (["remove-ln", "gpt2", "--out", "notes.txt"], REFUSED_FILE),
    (["remove-ln", "gpt2", "--out", "sweep"], NOT_CHECKPOINT),
    # convert
    (["convert", "./missing", "--to", "rmsnorm", "--out", "out"],
     "missing is not a zoo checkpoint: it needs config.json and model.safetensors (written by model.save)"),
    (["convert", "empty", "--to", "rmsnorm", "--out", "out"],
     "empty is not a zoo checkpoint: it needs config.json and model.safetensors (written by model.save)"),
    (["convert", "empty", "--to", "rmsnorm", "--out", "empty/out"],
     "--out empty/out is the input empty, inside it, or holds it; write to another folder"),
    (["convert", "empty", "--to", "rmsnorm", "--out", "sweep"], NOT_CHECKPOINT),
    (["convert", "empty", "--to", "rmsnorm", "--out", "out", "--threads", "0"], "--threads must be at least 1 (got 0)"),
]


@pytest.mark.parametrize("argv,says", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_fails_before_heavy_imports(files, argv, says):
    rc, heavy, err = run_cli(argv, files)
    assert (rc, err) == (1, [f"interp: error: {says}"])
    assert heavy == [], f"{argv} imported {heavy} before reporting its error"
    assert (files / "notes.txt").read_text() == "mine\n" and not (files / "out").exists()


@pytest.mark.parametrize("var,value", [("INTERP_THREADS", "0"), ("INTERP_JOB_WORKERS", "two")])
def test_main_job_environment_is_checked_before_heavy_imports(files, var, value):
    rc, heavy, err = run_cli(["report", "--default", "-o", "report/index.html"], files, env={var: value})
    assert (rc, heavy) == (1, [])
    assert err == [f"interp: error: environment variable {var}={value!r} must be a whole number, at least 1 "
                   f"(e.g. {var}={1 if var == 'INTERP_THREADS' else 2}); set it so or unset it"]


@pytest.mark.parametrize("argv", [["-h"]] + [[c, "-h"] for c in SUBCOMMANDS], ids=lambda a: " ".join(a))
def test_help_imports_nothing_heavy(files, argv):
    rc, heavy, err = run_cli(argv, files)
    assert (rc, heavy, err) == (0, [], [])


def test_a_results_folder_from_before_markers_is_still_recognised(files):
    """`interp collect -o` on a results folder written before markers: the early -o check imports the module that
    recognises it (interp.collectors.results) and asks for --force, as before; with --force it is accepted."""
    old = files / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"schema_version": 1}))
    (old / "residual.parquet").write_bytes(b"")
    rc, _, err = run_cli(["collect", "smollm2-135m", "--data", "missing.npy", "-o", "old"], files)
    assert (rc, err) == (1, ["interp: error: --data missing.npy: no such token file"])
    rc, _, err = run_cli(["collect", "smollm2-135m", "--data", "kjv", "-o", "old", "--collectors", "nope"], files)
    assert (rc, err) == (1, ["interp: error: old already holds an interp results; pass --force (force=True) to "
                             "replace it"])
    rc, _, err = run_cli(["collect", "smollm2-135m", "--data", "kjv", "-o", "old", "--collectors", "nope",
                          "--force"], files)
    assert rc == 1 and len(err) == 1 and err[0].startswith("interp: error: unknown collector(s) nope"), err


def test_the_early_checks_agree_with_the_libraries(tmp_path):
    """The constants and the message the early checks repeat (their modules import torch) are the libraries' own."""
    import interp.collectors.results as results
    import interp.zoo
    import interp.zoo.io as zoo_io
    from interp.commands._check import KIND_MODULES, zoo_checkpoint
    from interp.report.paths import INDEX
    assert INDEX == results.INDEX
    assert KIND_MODULES == {results.KIND: results.__name__, zoo_io.KIND: zoo_io.__name__}
    with pytest.raises(FileNotFoundError) as lib:
        interp.zoo.load(tmp_path)
    with pytest.raises(FileNotFoundError) as early:
        zoo_checkpoint(str(tmp_path))
    assert str(early.value) == str(lib.value)


@pytest.mark.parametrize("command", ["precision", "attribute"])
def test_a_registry_name_with_a_slash_is_not_taken_for_a_missing_path(tmp_path, command, monkeypatch, capsys):
    """schaeff/gpt2-small_LNFree300 is a registry name (interp.models.REGISTRY), not a relative path: without its
    weights the error is the registry's 'not on this machine', never 'no such file or folder'."""
    from interp.cli import main
    from interp.models import REGISTRY
    name = "schaeff/gpt2-small_LNFree300"
    assert name in REGISTRY
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.chdir(tmp_path)
    extra = {"precision": [], "attribute": ["--text", "a b", "--target-id", "3", "--out", "dla"]}[command]
    assert main([command, name, *extra]) == 1
    err = capsys.readouterr().err
    assert "no such file or folder" not in err and "not on this machine" in err, err


def test_a_reader_that_stops_early_is_not_an_error():
    """`interp strategies | head -1`: the reader closing the pipe printed 'interp: error: [Errno 32] Broken pipe'
    (exit 1). Now nothing on stderr, and the exit code a shell gives a program stopped by SIGPIPE (141)."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        p = subprocess.run([sys.executable, "-m", "interp.cli", "strategies"], stdout=w, stderr=subprocess.PIPE,
                           text=True, timeout=120, cwd=REPO)
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (141, "")


def test_quiet_collect_prints_no_loading_bar(tmp_path):
    """`interp collect ... --quiet` ('no progress bar') still drew transformers' 'Loading weights' bar on stderr
    for a transformers model; now stderr stays empty."""
    from interp.models import available_models
    df = available_models()
    if not df[df.name == "minilm-l6"].present.any():
        pytest.skip("minilm-l6 is not installed")
    (tmp_path / "t.txt").write_text("hello world\nthe cat sat on the mat\n")
    env = {k: v for k, v in os.environ.items() if k not in ("INTERP_DEBUG", "HF_HUB_DISABLE_PROGRESS_BARS")}
    p = subprocess.run([sys.executable, "-m", "interp.cli", "collect", "minilm-l6", "--data", "t.txt", "-o", "res",
                        "--collectors", "residual", "--quiet"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env=env)
    assert (p.returncode, p.stderr) == (0, "")
    assert (tmp_path / "res" / "residual.parquet").is_file()


@pytest.mark.parametrize("code,rc,err", [("the data folder is gone", 1, ["interp: error: the data folder is gone"]),
                                         (3, 3, []), (None, 0, [])])
def test_a_command_that_exits_keeps_its_code_and_its_reason(monkeypatch, capsys, code, rc, err):
    """A command (or a library under it) calling sys.exit("why") returned 1 with nothing on stderr: the reason was
    lost. Python's own rule is the reference: a str code is printed to stderr and exits 1, an int is the exit
    status, None is 0."""
    import interp.cli as cli

    def fake_parser():
        class P:
            def parse_args(self, argv):
                return type("A", (), {"func": staticmethod(lambda args: sys.exit(code))})()
        return P()
    monkeypatch.setattr(cli, "build_parser", fake_parser)
    assert cli.main(["strategies"]) == rc
    assert capsys.readouterr().err.splitlines() == err
    ref = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({code!r})"], capture_output=True, text=True)
    assert ref.returncode == rc and bool(ref.stderr) == bool(err)
