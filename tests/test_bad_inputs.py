"""Bad inputs to the `interp` CLI, as a hostile but honest user gives them: each exits non-zero with exactly one line
on stderr (no traceback), and leaves every file it was given, and the folder it ran in, byte-for-byte unchanged
with nothing new in it. A property test then feeds random bytes, random JSON and random arrays as the model,
config, data and results files."""
import json
import os
import pickle
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import interp
from interp.cli import main
from interp.data import TOKENIZER_PATH
from interp.tokenize import load_tokenizer

N_CTX, VOCAB = 16, 4096


def snapshot(root: Path) -> dict:
    """Every path under `root` with its bytes and mtime (what "unchanged, nothing left behind" means)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def visible_lines(err: str) -> list[str]:
    """stderr's lines as a terminal shows them: a progress bar cleared with \\r leaves nothing."""
    return [seg.split("\r")[-1] for seg in err.split("\n") if seg.split("\r")[-1].strip()]


def tiny_model():
    m = interp.zoo.build("pre-ln", n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=VOCAB)
    m.tokenizer = load_tokenizer(TOKENIZER_PATH)
    return m


def edit_json(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A user's folder: a model, token files, texts, a results directory and tampered copies of each."""
    r = tmp_path_factory.mktemp("user")
    tiny_model().save(r / "model")
    m = tiny_model()
    m.tokenizer = None
    m.save(r / "notok")  # a zoo checkpoint saved without a tokenizer
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, N_CTX * 6)
    np.save(r / "tokens.npy", ids.astype(np.uint16))
    ids.astype(np.int32).tofile(r / "tokens32.bin")
    np.save(r / "too_big.npy", np.append(ids, VOCAB + 5).astype(np.int32))
    np.save(r / "negative.npy", np.append(ids, -1).astype(np.int32))
    np.save(r / "floats.npy", ids.astype(np.float32) + 0.5)
    np.save(r / "matrix.npy", ids.reshape(6, N_CTX).astype(np.int64))
    np.save(r / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (r / "text.txt").write_text("In the beginning God created the heaven and the earth.\nAnd the earth was void.\n")
    (r / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    (r / "notes.txt").write_text("my notes\n")
    (r / "userdir").mkdir()
    (r / "userdir" / "thesis.tex").write_text("\\section{x}\n")
    # configs of the wrong type, and weights of another shape
    for name, change in {"cfg_str": lambda d: d["config"].update(n_layers="2"),
                         "cfg_null": lambda d: d["config"].update(norm_eps=None),
                         "cfg_heads0": lambda d: d["config"].update(n_heads=0),
                         "cfg_shape": lambda d: d["config"].update(d_mlp=48),
                         "cfg_list": lambda d: d.update(config=[1, 2])}.items():
        shutil.copytree(r / "model", r / name)
        edit_json(r / name / "config.json", change)
    # a transformers checkpoint whose pickle weights hold code
    (r / "pickled").mkdir()
    (r / "pickled" / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                                                           "n_layer": 1, "n_embd": 8, "n_head": 2,
                                                           "vocab_size": VOCAB, "n_positions": N_CTX}))
    shutil.copy(TOKENIZER_PATH, r / "pickled" / "tokenizer.json")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    (r / "pickled" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Payload()}))
    # a results directory and tampered copies
    res = interp.collect(tiny_model(), torch.tensor(ids.reshape(6, N_CTX)), progress=False)
    res.save(r / "res")
    tables = list(res.tables)
    for name, change in {"res_nocard": lambda d: d["card"].pop("n_layers"),
                         "res_traversal": lambda d: d["tables"].append("../../elsewhere/residual"),
                         "res_tables_str": lambda d: d.update(tables="residual")}.items():
        shutil.copytree(r / "res", r / name)
        edit_json(r / name / "results.json", change)
    shutil.copytree(r / "res", r / "res_list")
    (r / "res_list" / "results.json").write_text("[1, 2, 3]")
    shutil.copytree(r / "res", r / "res_badjson")
    (r / "res_badjson" / "results.json").write_text('{"schema_version": 1, "card": ')
    shutil.copytree(r / "res", r / "res_swapped")
    a, b = r / "res_swapped" / f"{tables[0]}.parquet", r / "res_swapped" / f"{tables[1]}.parquet"
    ta = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(ta)
    shutil.copytree(r / "res", r / "res_missing")
    (r / "res_missing" / f"{tables[0]}.parquet").unlink()
    (r / "report.html").write_text("<html>my own page</html>\n")
    (r / "userzoo").mkdir()
    (r / "userzoo" / "manifest.json").write_text('{"models": ["mine"]}\n')  # a manifest the zoo did not write
    return r


M, T = "model", "tokens.npy"

CASES = {
    # the writing rule
    "collect into a user's folder": ["collect", M, "--data", T, "-o", "."],
    "collect into a user's folder, --force": ["collect", M, "--data", T, "-o", "userdir", "--force"],
    "collect onto a file": ["collect", M, "--data", T, "-o", "notes.txt"],
    "collect onto the model": ["collect", M, "--data", T, "-o", M, "--force"],
    "collect onto a result without --force": ["collect", M, "--data", T, "-o", "res"],
    "report onto a user's file": ["report", "res", "-o", "report.html", "--force"],
    "report onto a folder": ["report", "res", "-o", "userdir"],
    "convert --out = input": ["convert", M, "--to", "rmsnorm", "--out", M, "--force"],
    "convert --out inside input": ["convert", M, "--to", "rmsnorm", "--out", "model/sub"],
    "convert --out a user's folder": ["convert", M, "--to", "rmsnorm", "--out", "userdir", "--force"],
    "remove-ln --out = input": ["remove-ln", M, "--out", M, "--force"],
    "attribute --out a user's folder": ["attribute", M, "--tokens", "1,2,3", "--target-id", "5", "--out", "userdir"],
    "sweep --out a user's folder": ["sweep", "--strategies", "pre-ln", "--steps", "2", "--out", "userdir"],
    # token data
    "ids above the vocabulary": ["collect", M, "--data", "too_big.npy", "-o", "out"],
    "negative ids": ["collect", M, "--data", "negative.npy", "-o", "out"],
    "float ids": ["collect", M, "--data", "floats.npy", "-o", "out"],
    "2-D token array": ["collect", M, "--data", "matrix.npy", "-o", "out"],
    "pickled .npy": ["collect", M, "--data", "objects.npy", "-o", "out"],
    "raw .bin without dtype": ["collect", M, "--data", "tokens32.bin", "-o", "out"],
    "--token-dtype on a .npy": ["collect", M, "--data", T, "-o", "out", "--token-dtype", "int32"],
    "missing token file": ["collect", M, "--data", "nope.npy", "-o", "out"],
    "non-UTF-8 text": ["collect", M, "--data", "latin1.txt", "-o", "out"],
    "--max-tokens 0": ["collect", M, "--data", T, "-o", "out", "--max-tokens", "0"],
    "--nproc 0": ["collect", M, "--data", T, "-o", "out", "--nproc", "0"],
    "--nproc -3": ["collect", M, "--data", T, "-o", "out", "--nproc", "-3"],
    "--batch-size 0": ["collect", M, "--data", T, "-o", "out", "--batch-size", "0"],
    "--checkpoint-every 0": ["collect", M, "--data", T, "-o", "out", "--checkpoint-every", "0"],
    "--state-dir a file": ["collect", M, "--data", T, "-o", "out", "--state-dir", "notes.txt"],
    "unknown collector": ["collect", M, "--data", T, "-o", "out", "--collectors", "residual,nope"],
    "--collectors naming none": ["collect", M, "--data", T, "-o", "out", "--collectors", " , "],
    "--collectors with an empty name": ["collect", M, "--data", T, "-o", "out", "--collectors", "residual,"],
    "fp16": ["collect", M, "--data", T, "-o", "out", "--dtype", "fp16"],
    "--batch-size abc": ["collect", M, "--data", T, "-o", "out", "--batch-size", "abc"],
    # models and configs
    "config n_layers '2'": ["collect", "cfg_str", "--data", T, "-o", "out"],
    "config norm_eps null": ["collect", "cfg_null", "--data", T, "-o", "out"],
    "config n_heads 0": ["collect", "cfg_heads0", "--data", T, "-o", "out"],
    "config a list": ["collect", "cfg_list", "--data", T, "-o", "out"],
    "weights of another shape": ["collect", "cfg_shape", "--data", T, "-o", "out"],
    "pickle with code": ["collect", "pickled", "--data", T, "-o", "out"],
    "missing model folder": ["collect", "./nope", "--data", T, "-o", "out"],
    "unknown model name": ["collect", "no-such-model", "--data", T, "-o", "out"],
    "texts for a model without a tokenizer": ["collect", "notok", "--data", "text.txt", "-o", "out"],
    "precision of a model without a tokenizer": ["precision", "notok", "--data", "text.txt", "--formats", "none"],
    # tampered results
    "card field missing": ["report", "res_nocard", "-o", "r.html"],
    "results.json a list": ["report", "res_list", "-o", "r.html"],
    "results.json invalid": ["report", "res_badjson", "-o", "r.html"],
    "parquet files swapped": ["report", "res_swapped", "-o", "r.html"],
    "parquet missing": ["report", "res_missing", "-o", "r.html"],
    "table name leaves the folder": ["report", "res_traversal", "-o", "r.html"],
    "tables a string": ["report", "res_tables_str", "-o", "r.html"],
    "report of nothing": ["report", "userdir", "-o", "r.html"],
    # training and surgery arguments
    "train --steps 0": ["train", "pre-ln", "--steps", "0", "--out", "zoo", "--runs", "runs"],
    "train --steps -5": ["train", "pre-ln", "--steps", "-5", "--out", "zoo", "--runs", "runs"],
    "train unknown strategy": ["train", "pre-lm", "--out", "zoo", "--runs", "runs"],
    "train --out a folder with another manifest.json": ["train", "pre-ln", "--steps", "1", "--out", "userzoo",
                                                        "--runs", "runs"],
    "train --out a file": ["train", "pre-ln", "--steps", "1", "--out", "notes.txt", "--runs", "runs"],
    "remove-ln --eval-seqs 0": ["remove-ln", M, "--out", "free", "--eval-seqs", "0"],
    "remove-ln --steps-per-stage -3": ["remove-ln", M, "--out", "free", "--steps-per-stage", "-3"],
    "remove-ln --lr inf": ["remove-ln", M, "--out", "free", "--lr", "inf"],
    "sweep --steps 0": ["sweep", "--strategies", "pre-ln", "--steps", "0", "--out", "sw"],
    "sweep --steps 1 (its only step compared with itself: always 'diverged')":
        ["sweep", "--strategies", "pre-ln", "--steps", "1", "--out", "sw"],
    "sweep --lrs inf": ["sweep", "--strategies", "pre-ln", "--lrs", "1e-3,inf", "--out", "sw"],
    "sweep unknown strategy": ["sweep", "--strategies", "pre-lm", "--out", "sw"],
    "attribute ids outside the vocabulary": ["attribute", M, "--tokens", "1,99999", "--target-id", "5", "--out", "o"],
    "attribute negative id": ["attribute", M, "--tokens", "1,-2", "--target-id", "5", "--out", "o"],
}

# what the one line must say, where an earlier version said something vaguer (defect 8 of the hostile-user pass)
SAYS = {
    "weights of another shape": "blocks.0.mlp.down.weight (16, 32) (config wants (16, 48))",
    "non-UTF-8 text": "latin1.txt is not UTF-8",
    "--max-tokens 0": "--max-tokens must be at least 1",
    "parquet missing": "residual.parquet is missing",
    "results.json invalid": "res_badjson/results.json is not valid JSON",
    "config n_heads 0": "'n_heads' must be at least 1",
    "config n_layers '2'": "'n_layers' must be int",
    "raw .bin without dtype": "--token-dtype",
    "table name leaves the folder": "is not a plain name",
    "collect into a user's folder": "refusing to touch it",
    "texts for a model without a tokenizer": "notok has no tokenizer, so --data text.txt cannot be encoded; pass a "
                                             ".npy or .bin token file",
    "precision of a model without a tokenizer": "notok has no tokenizer; interp precision encodes texts",
    "--collectors naming none": "--collectors names no collector",
    "--collectors with an empty name": "--collectors names no collector",
    "train --out a folder with another manifest.json": "userzoo/manifest.json exists and is not an interp zoo manifest",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(root, case, capsys, monkeypatch):
    monkeypatch.chdir(root)
    before = snapshot(root)
    rc = main(CASES[case])
    err = capsys.readouterr().err
    lines = visible_lines(err)
    assert rc != 0, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "error: unexpected " not in lines[0], lines[0]   # a clear message, not an internal error
    assert SAYS.get(case, "") in lines[0]
    assert snapshot(root) == before                  # nothing destroyed, changed or left behind


def test_collectors_list_with_spaces_is_read_name_by_name(root, tmp_path, monkeypatch):
    """--collectors 'residual, massive' refused ' massive' as unknown (the space after the comma was kept)."""
    from interp.collectors import Results
    monkeypatch.chdir(root)
    out = tmp_path / "res"
    assert main(["collect", M, "--data", T, "-o", str(out), "--collectors", "residual, massive", "--quiet"]) == 0
    assert {"residual", "massive"} <= set(Results.load(out).tables)
    assert not any(t.startswith("layer_effect") for t in Results.load(out).tables)


def test_raw_bin_is_read_with_the_dtype_it_was_written_with(root, tmp_path, monkeypatch):
    """Defect 6: int32 ids in a raw .bin read as uint16 gave twice the tokens, every other one 0."""
    monkeypatch.chdir(root)
    assert main(["collect", M, "--data", "tokens32.bin", "--token-dtype", "int32", "-o", str(tmp_path / "b"),
                 "--quiet"]) == 0
    assert main(["collect", M, "--data", T, "-o", str(tmp_path / "n"), "--quiet"]) == 0
    b, n = interp.Results.load(tmp_path / "b"), interp.Results.load(tmp_path / "n")
    assert b.meta["n_tokens"] == n.meta["n_tokens"] == N_CTX * 6
    for name in n.tables:
        assert b.tables[name].equals(n.tables[name]), name


def test_debug_shows_the_traceback(root, monkeypatch):
    monkeypatch.chdir(root)
    monkeypatch.setenv("INTERP_DEBUG", "1")
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        main(CASES["ids above the vocabulary"])


# ---- property test: random files where the CLI expects a model, a config, data or results -----------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) |
                    st.text(string.printable, max_size=12),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(string.ascii_letters, max_size=10),
                                                                              kids, max_size=5), max_leaves=12)
FIELDS = st.dictionaries(st.sampled_from(["n_layers", "d_model", "n_heads", "d_mlp", "n_ctx", "d_vocab", "norm_eps",
                                          "placement", "norm", "bias", "strategy", "init_std", "d_attn", "act"]),
                         JSON, max_size=4)
ARRAYS = hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int32, np.int64, np.uint16, np.float32, np.bool_]),
                    hnp.array_shapes(min_dims=0, max_dims=3, max_side=40), elements=None)
SETTINGS = settings(max_examples=int(os.environ.get("INTERP_FUZZ_EXAMPLES", "12")), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def run_cli(root: Path, argv: list[str], capsys) -> None:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        rc = main(argv)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    lines = visible_lines(err)
    assert "Traceback" not in err, err
    if rc != 0:
        assert len(lines) == 1, err
        assert "error: unexpected " not in lines[0], lines[0]


def scratch(root: Path, name: str) -> Path:
    d = root / "scratch" / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


@SETTINGS
@given(data=st.binary(max_size=300), which=st.sampled_from(["config.json", "model.safetensors", "tokenizer.json"]))
def test_random_bytes_as_model_files(root, capsys, data, which):
    d = scratch(root, "m")
    shutil.copytree(root / "model", d / "model")
    (d / "model" / which).write_bytes(data)
    run_cli(root, ["collect", str(d / "model"), "--data", T, "-o", str(d / "out"), "--quiet"], capsys)


@SETTINGS
@given(fields=FIELDS)
def test_random_config_fields(root, capsys, fields):
    d = scratch(root, "c")
    shutil.copytree(root / "model", d / "model")
    edit_json(d / "model" / "config.json", lambda c: c["config"].update(fields))
    run_cli(root, ["collect", str(d / "model"), "--data", T, "-o", str(d / "out"), "--quiet"], capsys)


@SETTINGS
@given(doc=JSON)
def test_random_json_as_config_and_results(root, capsys, doc):
    d = scratch(root, "j")
    shutil.copytree(root / "model", d / "model")
    (d / "model" / "config.json").write_text(json.dumps(doc))
    run_cli(root, ["collect", str(d / "model"), "--data", T, "-o", str(d / "out"), "--quiet"], capsys)
    shutil.copytree(root / "res", d / "res")
    (d / "res" / "results.json").write_text(json.dumps(doc))
    run_cli(root, ["report", str(d / "res"), "-o", str(d / "r.html")], capsys)


@SETTINGS
@given(arr=ARRAYS, suffix=st.sampled_from([".npy", ".bin", ".txt"]))
def test_random_arrays_as_data(root, capsys, arr, suffix):
    d = scratch(root, "a")
    f = d / f"data{suffix}"
    if suffix == ".npy":
        np.save(f, arr)
    else:
        f.write_bytes(arr.tobytes())
    extra = ["--token-dtype", "int32"] if suffix == ".bin" else []
    run_cli(root, ["collect", M, "--data", str(f), "-o", str(d / "out"), "--quiet", "--max-tokens", "64", *extra],
            capsys)


@SETTINGS
@given(data=st.binary(max_size=400), which=st.sampled_from(["results.json", "parquet", "state"]))
def test_random_bytes_as_results_files(root, capsys, data, which):
    d = scratch(root, "r")
    shutil.copytree(root / "res", d / "res")
    target = {"results.json": d / "res" / "results.json",
              "parquet": next((d / "res").glob("*.parquet")),
              "state": next((d / "res" / "state").glob("*.safetensors"))}[which]
    target.write_bytes(data)
    run_cli(root, ["report", str(d / "res"), "-o", str(d / "r.html")], capsys)


def test_sweep_strategies_with_spaces_are_read_name_by_name(tmp_path, capsys):
    """--strategies 'pre-ln, post-ln' was refused ('unknown strategy  post-ln': the space after the comma was kept);
    'pre-ln,' named an empty strategy. Names are stripped; an empty one is one line."""
    import pandas as pd
    base = ["sweep", "--lrs", "1e-3", "--steps", "2", "--batch", "1", "--layers", "1", "--quiet"]
    assert main([*base, "--strategies", "pre-ln, post-ln", "--out", str(tmp_path / "sw")]) == 0
    assert sorted(set(pd.read_csv(tmp_path / "sw" / "sweep.csv").strategy)) == ["post-ln", "pre-ln"]
    capsys.readouterr()
    assert main([*base, "--strategies", "pre-ln,", "--out", str(tmp_path / "sw2")]) == 1
    err = visible_lines(capsys.readouterr().err)
    assert len(err) == 1 and "--strategies names an empty strategy" in err[0], err
    assert not (tmp_path / "sw2").exists()
