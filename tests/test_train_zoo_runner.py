"""The zoo job queue: (strategy, seed) jobs, resumable state, manifest records, snapshots along training."""
import json

import pytest
import torch

import interp
from interp.train import zoo_runner
from interp.train.zoo import model_name, state_sha256

TINY = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32)


def test_plan_orders_seed_zero_first_and_skips_unknown_strategies():
    jobs = zoo_runner.plan({"pre-ln": 3, "no-norm": 1, "not-a-preset": 2})
    assert jobs == [("pre-ln", 0), ("no-norm", 0), ("pre-ln", 1), ("pre-ln", 2)]
    assert model_name("pre-ln", 0) == "pre-ln" and model_name("pre-ln", 2) == "pre-ln.seed2"


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """Two seeds of pre-ln and one of no-norm, 5 updates each, trained through the queue."""
    torch.set_num_threads(1)
    out, runs = tmp_path_factory.mktemp("zoo"), tmp_path_factory.mktemp("runs")
    seeds = {"pre-ln": 2, "no-norm": 1}
    (runs / "HOLD").write_text("pre-ln-lnfree\n")  # LN removal waits for its own test
    done = []
    while (name := zoo_runner.run_next(out, runs, steps=5, seeds=seeds, size=TINY, progress=False)):
        done.append(name)
    return out, runs, seeds, done


def test_queue_trains_every_job_once_and_records_it(tiny_zoo):
    out, runs, seeds, done = tiny_zoo
    assert done == ["pre-ln", "no-norm", "pre-ln.seed1"]
    assert not any((runs / n / "FAILED").exists() for n in done)
    m = json.loads((out / "manifest.json").read_text())
    assert m["version"] == 2 and sorted(m["models"]) == sorted(done)
    r = m["models"]["pre-ln.seed1"]
    assert (r["strategy"], r["seed"], r["status"], r["steps"], r["tokens"]) == ("pre-ln", 1, "done", 5, 5 * 8 * 128)
    assert r["job_cpu_s"] > 0 and m["zoo_cost"]["models"] == 3
    assert m["zoo_cost"]["tokens"] == 3 * 5 * 8 * 128
    # a second pass finds nothing left to do (the recipe matches), and the cards carry name and seed
    assert zoo_runner.run_next(out, runs, steps=5, seeds=seeds, size=TINY, progress=False) is None
    model = interp.zoo.load(out / "pre-ln.seed1")
    assert (model.card.name, model.card.strategy, model.card.extra["seed"]) == ("pre-ln.seed1", "pre-ln", 1)


def test_a_model_of_a_changed_preset_is_trained_again(tiny_zoo, monkeypatch, tmp_path):
    """A finished model whose preset has since changed (a field set differently, or a new field whose default
    differs from the preset) is not done: the queue retrains it instead of keeping the stale weights."""
    out = tiny_zoo[0]
    assert zoo_runner.is_done(out, "no-norm", 0, 5)
    from interp.zoo import STRATEGIES
    monkeypatch.setitem(STRATEGIES, "no-norm", {**STRATEGIES["no-norm"], "positions": "rotary"})
    assert not zoo_runner.is_done(out, "no-norm", 0, 5)
    # a field saved before it existed counts as its default
    import shutil
    old = tmp_path / "zoo"
    shutil.copytree(out / "no-norm", old / "no-norm")
    saved = json.loads((old / "no-norm" / "config.json").read_text())
    del saved["config"]["positions"]
    (old / "no-norm" / "config.json").write_text(json.dumps(saved))
    monkeypatch.setitem(STRATEGIES, "no-norm", {**STRATEGIES["no-norm"], "positions": "learned"})
    assert zoo_runner.is_done(old, "no-norm", 0, 5)
    monkeypatch.setitem(STRATEGIES, "no-norm", {**STRATEGIES["no-norm"], "positions": "rotary"})
    assert not zoo_runner.is_done(old, "no-norm", 0, 5)


def test_seeds_differ_and_step_zero_is_the_seeds_init(tiny_zoo):
    out = tiny_zoo[0]
    m0, m1 = interp.zoo.load(out / "pre-ln"), interp.zoo.load(out / "pre-ln.seed1")
    assert not torch.equal(m0.embed.weight, m1.embed.weight)
    init = interp.zoo.load(out / "pre-ln.seed1", step=0)
    ref = interp.zoo.build("pre-ln", seed=1, **TINY, n_ctx=128, d_vocab=4096)
    assert state_sha256(init) == state_sha256(ref)
    rec = json.loads((out / "pre-ln.seed1" / "config.json").read_text())["training"]
    assert rec["init_sha256"] == state_sha256(ref)


def test_shipped_snapshot_equals_an_independent_run_to_that_step(tiny_zoo):
    """pre-ln seed 0 ships its 10 % / 30 % snapshots; the weights after 2 updates (30 % of 5, rounded) equal a
    fresh Trainer run of the same recipe stopped there."""
    from interp.data import TokenBatches
    from interp.train.trainer import Trainer
    from interp.train.zoo import zoo_train_config
    out = tiny_zoo[0]
    kept = sorted(p.name for p in (out / "pre-ln" / "checkpoints").iterdir())
    assert kept == ["step-000002.safetensors"]  # 10 % of 5 rounds to 0 (rebuilt, not shipped), 30 % to 2
    assert not (out / "pre-ln.seed1" / "checkpoints").exists()  # only seed 0 ships snapshots
    snap = interp.zoo.load(out / "pre-ln", step=2)
    data = zoo_runner._prepared()
    cfg = zoo_train_config(5, seed=0)
    model = interp.zoo.build("pre-ln", seed=0, **TINY, n_ctx=128, d_vocab=4096)
    train = TokenBatches(data.train_tokens, cfg.seq_len, cfg.batch_size, data.tokenizer.bos_id, seed=0)
    Trainer(model, train, cfg, progress=False).run(until=2)
    assert state_sha256(snap) == state_sha256(model)
    with pytest.raises(FileNotFoundError, match="kept steps"):
        interp.zoo.load(out / "pre-ln", step=3)


def test_a_failing_job_is_marked_and_skipped(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("simulated failure")
    monkeypatch.setattr(zoo_runner, "train_one", boom)
    name = zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", steps=2, seeds={"no-norm": 1}, size=TINY,
                               progress=False)
    assert name == "no-norm" and "simulated failure" in (tmp_path / "runs" / "no-norm" / "FAILED").read_text()
    assert zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", steps=2, seeds={"no-norm": 1}, size=TINY,
                               progress=False) is None


def test_a_job_another_worker_failed_or_finished_before_the_lock_is_not_taken_again(tmp_path, monkeypatch):
    """The pre-lock checks are read before the lock: a job another worker fails (or finishes) and releases in
    between must be checked again under the lock, not retrained over the other worker's FAILED traceback."""
    from contextlib import contextmanager
    real, trained = zoo_runner._flock, []

    @contextmanager
    def late(path, block=True):  # the other worker fails the job and releases its lock just before ours
        (tmp_path / "runs" / "no-norm").mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / "no-norm" / "FAILED").write_text("the other worker's traceback")
        with real(path, block) as got:
            yield got
    monkeypatch.setattr(zoo_runner, "_flock", late)
    monkeypatch.setattr(zoo_runner, "train_one", lambda *a, **k: trained.append(a[0]))
    assert zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", steps=2, seeds={"no-norm": 1}, size=TINY,
                               progress=False) is None
    assert trained == [] and (tmp_path / "runs" / "no-norm" / "FAILED").read_text() == "the other worker's traceback"


def test_a_job_killed_before_recording_its_finished_model_is_recorded_by_the_next_pass(tmp_path, monkeypatch):
    """A kill between installing the model (the job is done) and writing the manifest left the model out of the
    manifest for good: no later pass takes a done job. The next pass records it from its config.json."""
    class Killed(BaseException):
        pass

    def killed(*a, **k):
        raise Killed
    args = dict(steps=2, seeds={"no-norm": 1}, size=TINY, progress=False)
    record = zoo_runner.record
    monkeypatch.setattr(zoo_runner, "record", killed)
    with pytest.raises(Killed):
        zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", **args)
    monkeypatch.setattr(zoo_runner, "record", record)
    assert zoo_runner.is_done(tmp_path / "zoo", "no-norm", 0, 2) and not (tmp_path / "zoo" / "manifest.json").exists()
    assert zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", **args) == "no-norm"
    rec = json.loads((tmp_path / "zoo" / "manifest.json").read_text())["models"]["no-norm"]
    saved = json.loads((tmp_path / "zoo" / "no-norm" / "config.json").read_text())["training"]
    assert rec == saved and rec["status"] == "done"
    assert zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", **args) is None  # recorded once, not again


def test_held_strategies_wait(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "HOLD").write_text("no-norm\n")
    assert zoo_runner.run_next(tmp_path / "zoo", tmp_path / "runs", steps=2, seeds={"no-norm": 1}, size=TINY,
                               progress=False) is None


def test_ln_removal_job_writes_the_lnfree_model_and_both_controls(tiny_zoo, monkeypatch):
    """Seed 0 of pre-ln → pre-ln-lnfree (no norm left), pre-ln-vanilla and pre-ln-vanilla-single (LayerNorm
    kept), each recorded; the CE in the record is the CE of the saved weights on the held-out sample."""
    from interp.data import heldout_tokens
    from interp.surgery.remove_ln import lm_ce
    from interp.train import lnfree_job
    out, runs, _, _ = tiny_zoo
    monkeypatch.setattr(lnfree_job, "STEPS_PER_STAGE", 2)
    (runs / "HOLD").unlink()
    assert zoo_runner.run_next(out, runs, steps=5, seeds={"pre-ln": 1}, size=TINY, progress=False) == "pre-ln-lnfree"
    lnfree, vanilla = interp.zoo.load(out / "pre-ln-lnfree"), interp.zoo.load(out / "pre-ln-vanilla")
    single = interp.zoo.load(out / "pre-ln-vanilla-single")
    assert lnfree.card.placement == "none" and not list(lnfree._norms)
    assert vanilla.card.placement == "pre" and vanilla.card.name == "pre-ln-vanilla"
    rec = json.loads((out / "pre-ln-lnfree" / "config.json").read_text())["training"]
    ev = heldout_tokens(16, 129)
    assert abs(lm_ce(lnfree, ev) - rec["ce_at_training"]["lnfree"]) < 1e-5
    assert abs(lm_ce(single, ev) - rec["ce_at_training"]["vanilla_single"]) < 1e-5
    m = json.loads((out / "manifest.json").read_text())
    assert {"pre-ln-lnfree", "pre-ln-vanilla", "pre-ln-vanilla-single"} <= set(m["models"])
    assert lnfree_job.is_done(out, 0)
    assert zoo_runner.run_next(out, runs, steps=5, seeds={"pre-ln": 1}, size=TINY, progress=False) is None


def test_ln_removal_job_replaces_only_its_own_folders(tiny_zoo, monkeypatch):
    """The job's three output folders: a user's folder at one of them is refused before any work and left as it
    was (nothing else written); the job's own earlier outputs are replaced, with no temp folder left behind."""
    from interp.outputs import MARKER, OutputRefused
    from interp.train import lnfree_job as J
    out = tiny_zoo[0]
    monkeypatch.setattr(J, "STEPS_PER_STAGE", 1)
    n = J.names(1)
    user = out / n[J.VANILLA]
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OutputRefused, match="not empty and is not an interp checkpoint"):
        J.run(out, 1, zoo_runner._prepared())
    assert sorted(p.name for p in out.iterdir()) == before and [p.name for p in user.iterdir()] == ["notes.txt"]
    assert (user / "notes.txt").read_text() == "mine\n"
    (user / "notes.txt").unlink()   # the user clears the folder: an empty folder may be used
    want = {MARKER, "config.json", "model.safetensors", "tokenizer.json"}
    for _ in range(2):              # the second run replaces the first run's outputs
        ce = J.run(out, 1, zoo_runner._prepared())["ce"]
        for k in (J.LNFREE, J.VANILLA, J.SINGLE):
            assert {p.name for p in (out / n[k]).iterdir()} == want | ({"removal.json"} if k == J.LNFREE else set())
        def no_nan(c):  # json.loads accepts NaN, which is not JSON (other readers refuse the file)
            raise AssertionError(f"removal.json holds {c}")
        assert json.loads((out / n[J.LNFREE] / "removal.json").read_text(), parse_constant=no_nan)["ce"] == ce
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert interp.zoo.load(out / n[J.VANILLA]).cfg.n_layers == TINY["n_layers"]


def _train_cli(tmp_path, capsys, *argv):
    """`interp train pre-ln --steps 1 ARGV` in `tmp_path`: its exit code, its stderr lines and the folder after."""
    import os

    from interp.cli import main
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rc = main(["train", "pre-ln", "--steps", "1", "--quiet", *argv])
    finally:
        os.chdir(cwd)
    files = {str(p.relative_to(tmp_path)): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    return rc, capsys.readouterr().err.strip().splitlines(), files


@pytest.mark.parametrize("argv,says", [
    (["--threads", "0", "--out", "zoo", "--runs", "runs"], "--threads must be at least 1"),
    (["--out", "zoo", "--runs", "notes.txt"], "--runs notes.txt exists and is not a folder"),
    (["--out", "zoo", "--runs", "notes.txt/runs"], "--runs: notes.txt is a file, not a folder"),
    (["--out", "notes.txt/zoo", "--runs", "runs"], "--out: notes.txt is a file, not a folder"),
])
def test_train_bad_paths_and_threads_are_one_line(tmp_path, capsys, argv, says):
    (tmp_path / "notes.txt").write_text("mine\n")
    rc, err, files = _train_cli(tmp_path, capsys, *argv)
    assert rc == 1 and len(err) == 1 and says in err[0] and "Errno" not in err[0], err
    assert files == {"notes.txt": b"mine\n"}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b"[1]", b'{"training": 3}'])
def test_train_names_a_damaged_config_in_out_before_any_work(tmp_path, capsys, workers, data):
    """<out>/<model>/config.json that is not a zoo config: one line naming it before any job starts (with several
    workers too, whose job processes would each fail on it); the folder is left as it was."""
    (tmp_path / "zoo" / "pre-ln").mkdir(parents=True)
    (tmp_path / "zoo" / "pre-ln" / "config.json").write_bytes(data)
    rc, err, files = _train_cli(tmp_path, capsys, "--out", "zoo", "--runs", "runs", "--workers", workers)
    assert rc == 1 and len(err) == 1 and "zoo/pre-ln/config.json is not a zoo checkpoint's config" in err[0], err
    assert files == {"zoo": None, "zoo/pre-ln": None, "zoo/pre-ln/config.json": data}


def test_work_stops_a_worker_whose_job_process_keeps_crashing(tmp_path, monkeypatch, capsys):
    """A job process that crashes every time (a fault in the code or the data, not a kill) used to be retried
    every minute forever; each worker now stops after MAX_CRASHES crashes in a row and the run says so."""
    import subprocess as sp

    from interp.train import zoo_runner as zr
    calls = []

    def fake_run(args, **kw):
        calls.append(args)
        return sp.CompletedProcess(args, 1)  # what a job process that dies on an exception returns

    monkeypatch.setattr(zr.subprocess, "run", fake_run)
    monkeypatch.setattr(zr, "CRASH_BACKOFF_S", 0)
    monkeypatch.setattr(zr.time, "sleep", lambda s: None)
    rc = zr.main(["--workers", "2", "--out", str(tmp_path / "zoo"), "--runs", str(tmp_path / "runs")])
    assert rc == 1 and len(calls) == 2 * zr.MAX_CRASHES
    err = capsys.readouterr().err
    assert "2 of 2 worker(s) stopped" in err and "crashed 5 times in a row (exit status 1)" in err
    assert "--next" in err and "\n" not in err.strip()


def test_work_keeps_going_after_a_crash_that_does_not_repeat(tmp_path, monkeypatch):
    import subprocess as sp

    from interp.train import zoo_runner as zr
    codes = iter([1, 0, 1, 0, zr.NEXT_DONE])   # crashes between successes never reach MAX_CRASHES in a row

    monkeypatch.setattr(zr.subprocess, "run", lambda args, **kw: sp.CompletedProcess(args, next(codes)))
    monkeypatch.setattr(zr.time, "sleep", lambda s: None)
    zr.work(1, tmp_path / "zoo", tmp_path / "runs")   # returns: the last job reported none left


def test_a_kill_while_a_trained_model_replaces_the_old_one_keeps_a_whole_model(tiny_zoo, tmp_path, monkeypatch):
    """train_one installs the finished model over the earlier one; killed halfway through deleting a model folder,
    data/zoo/<name> is still a whole model (the old or the new one), never a half-deleted folder."""
    import shutil
    from pathlib import Path

    from interp.train.zoo import train_one, zoo_train_config
    out, runs, _, _ = tiny_zoo
    dest, run_dir = tmp_path / "pre-ln", tmp_path / "run"
    shutil.copytree(out / "pre-ln", dest)
    shutil.copytree(runs / "pre-ln", run_dir)   # a finished run: train_one resumes it and installs again
    real = shutil.rmtree

    def killed(p, *a, **k):
        if (Path(p) / "config.json").is_file() or (Path(p) / "old" / "config.json").is_file():
            for f in Path(p).rglob("model.safetensors"):
                f.unlink()
            raise KeyboardInterrupt("killed")
        return real(p, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        train_one("pre-ln", zoo_runner._prepared(), zoo_train_config(5, seed=0), dest, run_dir, size=TINY, seed=0,
                  progress=False)
    monkeypatch.undo()
    m = interp.zoo.load(dest)
    assert state_sha256(m) == state_sha256(interp.zoo.load(out / "pre-ln"))


def test_a_run_that_left_a_job_failed_does_not_end_as_a_success(tmp_path, capsys, monkeypatch):
    """`interp train` skipped a failing job (FAILED) and exited 0, as if the zoo were complete; it now ends with one
    line naming the failed job and where its traceback is."""
    def boom(*a, **k):
        raise RuntimeError("simulated failure")
    monkeypatch.setattr(zoo_runner, "train_one", boom)
    rc, err, _ = _train_cli(tmp_path, capsys, "--seeds", "1", "--out", "zoo", "--runs", "runs")
    assert rc != 0 and len(err) == 2, err  # the job's own 'failed, see ...' line, then the run's error
    assert "1 job(s) failed and were skipped: pre-ln" in err[1] and "runs/<job>/FAILED" in err[1]
    assert "simulated failure" in (tmp_path / "runs" / "pre-ln" / "FAILED").read_text()


def test_a_failed_mark_on_a_model_that_is_done_is_not_a_failure(tmp_path, monkeypatch):
    """A FAILED left beside a model that is trained and current (e.g. the record step failed after the install) does
    not make the run fail; a FAILED job that is not done does."""
    (tmp_path / "runs" / "no-norm").mkdir(parents=True)
    (tmp_path / "runs" / "no-norm" / "FAILED").write_text("traceback")
    monkeypatch.setattr(zoo_runner, "is_done", lambda *a: True)
    zoo_runner.check_failed(tmp_path / "zoo", tmp_path / "runs", 2, ["no-norm"], {"no-norm": 1})
    monkeypatch.setattr(zoo_runner, "is_done", lambda *a: False)
    with pytest.raises(RuntimeError, match="1 job"):
        zoo_runner.check_failed(tmp_path / "zoo", tmp_path / "runs", 2, ["no-norm"], {"no-norm": 1})


def test_workers_with_different_runs_folders_keep_each_others_records(tmp_path, monkeypatch):
    """The manifest's lock lived in --runs, so two `interp train` with different --runs and one --out each read
    the manifest, and the later write dropped the other's record. One worker is held between its read and its
    write while the other records: both records must be there after both are done."""
    import threading
    write, first, held = zoo_runner._write_json, threading.Event(), threading.Event()

    def slow_write(path, m):
        if not first.is_set():  # the first writer (worker a) waits here, after its read, while b records
            first.set()
            held.wait(1.0)
        write(path, m)
    monkeypatch.setattr(zoo_runner, "_write_json", slow_write)
    out = tmp_path / "zoo"
    a = threading.Thread(target=zoo_runner.record, args=(out, "a", {"status": "done"}, {}, {}))
    a.start()
    first.wait(5)
    b = threading.Thread(target=zoo_runner.record, args=(out, "b", {"status": "done"}, {}, {}))
    b.start()
    b.join(0.5)  # with one lock, b waits for a; with a lock per --runs, b wrote by now
    held.set()
    a.join(), b.join()
    assert set(json.loads((out / "manifest.json").read_text())["models"]) == {"a", "b"}


def test_ln_removal_runs_only_when_pre_ln_is_planned(tmp_path, monkeypatch):
    """`interp train no-norm` (no --seeds) into a folder whose pre-ln is trained took pre-ln's LN removal too (the
    removal's seeds came from ZOO_SEEDS, not from the plan): ~10 CPU minutes per seed, unasked, and a failure
    there went unreported (check_failed counts it only when pre-ln is planned). It is now part of the plan only
    with pre-ln, with the plan's pre-ln seeds."""
    from unittest import mock

    from interp.train import lnfree_job
    ran = []
    monkeypatch.setattr(zoo_runner, "is_done", lambda out, s, k, steps: True)  # every strategy job is finished
    monkeypatch.setattr(lnfree_job, "is_done", lambda out, k: False)
    monkeypatch.setattr(lnfree_job, "run", lambda out, seed, data: ran.append(seed) or {})
    monkeypatch.setattr(zoo_runner, "record", lambda *a, **k: {})
    monkeypatch.setattr(zoo_runner, "_record_unrecorded", lambda *a: None)
    monkeypatch.setattr(zoo_runner, "_prepared", mock.MagicMock)
    monkeypatch.setattr("interp.data.unigram_entropy", lambda *a: 0.0)
    out = tmp_path / "zoo"
    for k in range(3):
        (out / model_name("pre-ln-lnfree", k)).mkdir(parents=True)
        (out / model_name("pre-ln-lnfree", k) / "config.json").write_text('{"training": {}}')
    args = dict(steps=5, progress=False)
    assert zoo_runner.run_next(out, tmp_path / "runs", strategies=["no-norm"], **args) is None and ran == []
    assert zoo_runner.run_next(out, tmp_path / "r2", strategies=["no-norm"], seeds={"no-norm": 1}, **args) is None
    assert zoo_runner.run_next(out, tmp_path / "r3", strategies=["no-norm", "pre-ln"], seeds={"no-norm": 1, "pre-ln": 2},
                               **args) == "pre-ln-lnfree" and ran == [0]
    assert zoo_runner.run_next(out, tmp_path / "r4", strategies=["pre-ln"], **args) == "pre-ln-lnfree" and ran == [0, 0]


def test_ln_removal_is_redone_when_its_source_is_retrained(tmp_path, monkeypatch):
    """pre-ln retrained with other --steps (same seed, so the same initial weights) left pre-ln-lnfree and its
    controls made from the old pre-ln: the job's is_done compared only the source's init hash. It now also needs
    the source's trained weights to be the ones the removal started from."""
    import interp.data
    from interp.train import lnfree_job
    monkeypatch.setattr(lnfree_job, "STEPS_PER_STAGE", 1)
    held = interp.data.heldout_tokens
    monkeypatch.setattr(interp.data, "heldout_tokens", lambda n, t: held(2, t))  # a smaller CE sample: faster
    out = tmp_path / "zoo"
    for steps in (1, 2):
        done = []
        while (n := zoo_runner.run_next(out, tmp_path / f"runs{steps}", steps=steps, seeds={"pre-ln": 1}, size=TINY,
                                        progress=False)):
            done.append(n)
        assert done == ["pre-ln", "pre-ln-lnfree"]
        src = state_sha256(interp.zoo.load(out / "pre-ln"))
        for k in ("pre-ln-lnfree", "pre-ln-vanilla", "pre-ln-vanilla-single"):
            assert json.loads((out / k / "config.json").read_text())["training"]["source_sha256"] == src


@pytest.mark.parametrize("workers", ["1", "2"])
def test_train_refuses_to_replace_a_finished_model_of_another_step_count(tmp_path, capsys, monkeypatch, workers):
    """`interp train pre-ln --steps 1` into a folder holding a finished 2000-step pre-ln (the default --out is the
    shipped data/zoo) swapped it for a 1-step model; it is now one line naming the model and --force, before any
    work, the folder as it was. With --force the run goes on to the training loop."""
    from interp.train import zoo_runner as zr
    saved = {"config": {"strategy": "pre-ln"}, "training": {"status": "done", "steps": 2000, "seed": 0,
                                                            "strategy": "pre-ln"}}
    (tmp_path / "zoo" / "pre-ln").mkdir(parents=True)
    data = json.dumps(saved).encode()
    (tmp_path / "zoo" / "pre-ln" / "config.json").write_bytes(data)
    started = []
    monkeypatch.setattr(zr, "run_next", lambda *a, **k: started.append("run_next"))
    monkeypatch.setattr(zr, "work", lambda *a, **k: started.append("work"))
    monkeypatch.setattr(zr, "check_failed", lambda *a, **k: None)
    rc, err, files = _train_cli(tmp_path, capsys, "--out", "zoo", "--runs", "runs", "--workers", workers)
    assert rc == 1 and len(err) == 1, err
    assert "pre-ln (2000 steps)" in err[0] and "--force" in err[0] and "another --out" in err[0], err
    assert files == {"zoo": None, "zoo/pre-ln": None, "zoo/pre-ln/config.json": data} and not started
    rc, err, _ = _train_cli(tmp_path, capsys, "--out", "zoo", "--runs", "runs", "--workers", workers, "--force")
    assert rc == 0 and started == ["run_next" if workers == "1" else "work"], (err, started)


def test_replaced_unasked_names_finished_and_unrecorded_models_only(tmp_path):
    """A run that stopped before its last step (resumed), a model of the same step count or no folder at all is
    nothing to protect; a finished model of another step count, or a model saved without a training record, is."""
    from interp.train import zoo_runner as zr
    (tmp_path / "pre-ln").mkdir()
    cfg = tmp_path / "pre-ln" / "config.json"
    for training, want in (({"status": "done", "steps": 2000}, "pre-ln (2000 steps)"),
                           ({"status": "running", "steps": 2000}, None), (None, "pre-ln (a model without a "
                                                                                 "training record)")):
        cfg.write_text(json.dumps({"config": {}, **({"training": training} if training else {})}))
        assert zr.replaced_unasked(tmp_path, "pre-ln", 0, 5) == want
    cfg.write_text(json.dumps({"config": {}, "training": {"status": "done", "steps": 2000}}))
    assert zr.replaced_unasked(tmp_path, "pre-ln", 0, 2000) is None
    assert zr.replaced_unasked(tmp_path, "post-ln", 0, 5) is None
    zr.check_replace(tmp_path, 2000, ["pre-ln"])  # the same step count: no refusal
    with pytest.raises(ValueError, match=r"pre-ln \(2000 steps\).*--force"):
        zr.check_replace(tmp_path, 5, ["pre-ln"])
