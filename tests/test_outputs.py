"""The writing rule (interp/outputs.py): an output replaces only a previous output of its own kind, and only with
--force; a folder of the user's files, a plain file or another kind of output is refused with one line and left
byte-for-byte unchanged; written files and folders honour the umask."""
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import interp
from interp.cli import main
from interp.collectors import Results
from interp.outputs import MARKER, OutputRefused, atomic_write_bytes, check_dir_target, marker_kind

N_CTX = 16


def snapshot(root: Path) -> dict:
    """Every path under `root` with its bytes, mode and mtime (what "left unchanged" means)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.read_bytes() if p.is_file() else None, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A folder as a user has it: a model checkpoint and a token file (nothing interp may delete)."""
    d = tmp_path_factory.mktemp("user")
    interp.zoo.build("pre-ln", n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=64).save(d / "model")
    np.save(d / "tokens.npy", np.random.default_rng(0).integers(0, 64, N_CTX * 4).astype(np.uint16))
    (d / "notes.txt").write_text("my notes\n")
    return d


def collect(user_dir, out, *extra):
    return main(["collect", str(user_dir / "model"), "--data", str(user_dir / "tokens.npy"), "-o", str(out),
                 "--collectors", "residual", "--batch-size", "2", "--quiet", *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_collect_into_a_users_folder_is_refused_and_changes_nothing(user_dir, capsys):
    before = snapshot(user_dir)
    for extra in ([], ["--force"]):  # --force never lets a run delete what it did not write
        assert collect(user_dir, user_dir, *extra) != 0
        line = one_error_line(capsys)
        assert str(user_dir) in line and "refusing" in line
        assert snapshot(user_dir) == before


def test_collect_onto_a_file_is_refused(user_dir, capsys):
    before = snapshot(user_dir)
    for extra in ([], ["--force"]):
        assert collect(user_dir, user_dir / "notes.txt", *extra) != 0
        assert "notes.txt" in one_error_line(capsys)
        assert snapshot(user_dir) == before


def test_previous_result_is_replaced_only_with_force(user_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert collect(user_dir, out) == 0
    assert marker_kind(out) == "results"
    first = snapshot(out)
    assert collect(user_dir, out) != 0
    assert "--force" in one_error_line(capsys)
    assert snapshot(out) == first
    assert collect(user_dir, out, "--force") == 0
    assert Results.load(out).meta["n_tokens"] == N_CTX * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp or .old folder left beside it


def test_another_kind_of_output_is_not_replaced(user_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    (ckpt).mkdir()
    (ckpt / MARKER).write_text('{"kind": "checkpoint"}')
    (ckpt / "x").write_text("keep")
    before = snapshot(tmp_path)
    assert collect(user_dir, ckpt, "--force") != 0
    assert "interp checkpoint" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_empty_folder_is_used_and_unmarked_result_like_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_dir_target(tmp_path / "empty", "results") is False
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "results.json").write_text('{"schema_version": 1}')
    (fake / "mine.txt").write_text("not a parquet")  # a user's file beside a results.json: not ours to delete
    with pytest.raises(OutputRefused, match="refusing"):
        check_dir_target(fake, "results", force=True)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(user_dir, tmp_path, mask):
    """Results, checkpoints, reports, training runs and their snapshots: files 0666 & ~umask, folders 0777."""
    from interp.data import TokenBatches
    from interp.outputs import atomic_write_text
    from interp.train import TrainConfig, Trainer
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
        atomic_write_text(tmp_path / "report.html", "<html></html>")
        assert collect(user_dir, tmp_path / "res") == 0
        model = interp.load_model(user_dir / "model")
        model.save(tmp_path / "ckpt")
        cfg = TrainConfig(steps=1, batch_size=2, seq_len=8, warmup=0, eval_every=1, eval_batches=1, ckpt_every=1)
        Trainer(model, TokenBatches(np.arange(1, 60) % 64, 8, 2, bos_id=0), cfg, run_dir=tmp_path / "run",
                progress=False, snapshots=[0]).run()
    finally:
        os.umask(old)
    for p in [tmp_path / "f.bin", tmp_path / "report.html", *tmp_path.rglob("*")]:
        want = 0o777 & ~mask if p.is_dir() else 0o666 & ~mask
        assert stat.S_IMODE(p.stat().st_mode) == want, p


def test_a_file_where_a_folder_is_expected_is_one_line_before_any_work(user_dir, capsys):
    """-o under a user's file (collect's results folder, report's HTML file): one line naming the file, checked
    before the model or results are loaded (a results path that does not exist is not even looked at), nothing
    written."""
    from interp.outputs import atomic_write_text
    before = snapshot(user_dir)
    notes = user_dir / "notes.txt"
    assert collect(user_dir, notes / "sub") != 0
    line = one_error_line(capsys)
    assert f"{notes} is a file, not a folder" in line and "Errno" not in line
    assert main(["report", str(user_dir / "no-such-results"), "-o", str(notes / "x.html")]) != 0
    line = one_error_line(capsys)
    assert f"{notes} is a file, not a folder" in line and "Errno" not in line
    with pytest.raises(OutputRefused, match="is a file, not a folder"):
        atomic_write_text(notes / "deeper" / "x.html", "x")
    assert snapshot(user_dir) == before


@pytest.mark.parametrize("out", [".", "..", ""])
def test_an_output_named_dot_is_refused_before_any_work(user_dir, tmp_path, monkeypatch, capsys, out):
    """-o . (or .., or an empty string) run inside an earlier result with --force: a folder cannot be renamed
    by the name '.', so the run used to collect, then fail with an errno line and leave a '..*.old' folder in
    the result. Now one line saying to name the folder, before any work, and the folder unchanged."""
    res = tmp_path / "res"
    assert collect(user_dir, res) == 0
    (res / "sub").mkdir()
    monkeypatch.chdir(res / "sub" if out == ".." else res)
    before = snapshot(tmp_path)
    assert collect(user_dir, out, "--force") != 0
    line = one_error_line(capsys)
    assert "current folder" in line and "Errno" not in line, line
    assert snapshot(tmp_path) == before
    with pytest.raises(OutputRefused, match="current folder"):
        check_dir_target(out, "results", force=True)


def test_a_file_written_into_the_empty_target_during_the_swap_stays_where_the_user_put_it(tmp_path, monkeypatch):
    """install_dir checked that the target folder was empty, then moved it aside and deleted it after the swap: a
    file the user wrote into it in between went into a hidden '.name.*.old' folder and the run failed with a
    bare OSError. Now the swap is one rename onto the empty folder (which the system refuses once it holds a
    file): the user's file stays in the folder, the output is not installed, one line says why."""
    import interp.outputs as outputs
    dest = tmp_path / "res"
    dest.mkdir()
    real = outputs.check_dir_target

    def check_then_user_writes(d, kind, force=False):
        r = real(d, kind, force)
        (Path(d) / "notes.txt").write_text("mine")
        return r
    monkeypatch.setattr(outputs, "check_dir_target", check_then_user_writes)
    tmp = tmp_path / "staging"
    tmp.mkdir()
    (tmp / "table.parquet").write_bytes(b"x")
    with pytest.raises(OutputRefused, match="was written to while"):
        outputs.install_dir(tmp, dest, "results")
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    assert (dest / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "staging"]  # nothing hidden left behind


def test_an_empty_target_is_replaced_and_a_forced_one_leaves_nothing_aside(tmp_path):
    """The two swaps install_dir makes: onto an empty folder, and over a previous output of the kind (force)."""
    from interp.outputs import install_dir
    dest = tmp_path / "res"
    dest.mkdir()
    for n in range(2):
        tmp = tmp_path / f"staging{n}"
        tmp.mkdir()
        (tmp / f"t{n}").write_bytes(b"x")
        install_dir(tmp, dest, "results", force=True)
        assert sorted(p.name for p in dest.iterdir()) == sorted([MARKER, f"t{n}"])
        assert marker_kind(dest) == "results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
