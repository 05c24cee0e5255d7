"""Training never keeps a non-finite "last good checkpoint", never resumes another run, never writes into a folder
of other files, and refuses hyper-parameters no run can use. References: torch.isfinite over the saved tensors,
and the loss curve of one uninterrupted run."""
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

import interp
from interp.data import TokenBatches
from interp.outputs import OutputRefused
from interp.train import TrainConfig, Trainer
from interp.train.checkpoint import latest

TINY = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": 16, "d_vocab": 64}
STREAM = torch.randint(2, 64, (3000,), generator=torch.Generator().manual_seed(0))
CFG = TrainConfig(steps=6, batch_size=4, seq_len=16, warmup=1, eval_every=3, eval_batches=1, ckpt_every=1)


def model(seed=0):
    return interp.zoo.build("pre-ln", seed=seed, **TINY)


def batches(stream=STREAM):
    return TokenBatches(stream, 16, 4, bos_id=0, seed=1)


def test_infinite_lr_is_refused_and_a_nan_update_is_never_checkpointed(tmp_path):
    with pytest.raises(ValueError, match="lr must be a finite number"):
        Trainer(model(), batches(), dataclasses.replace(CFG, lr=float("inf")))
    # an update that leaves a weight NaN (what lr=inf did): the run stops right after it, and the last
    # checkpoint is the one before it (before this guard, the NaN weights were saved as the next checkpoint)
    t = Trainer(model(), batches(), CFG, run_dir=tmp_path, progress=False)
    real = t.opt.step

    def nan_update(*a, **k):
        out = real(*a, **k)
        if t.step == 3:
            with torch.no_grad():
                t.model.blocks[1].mlp.down.weight[0, 0] = float("nan")
        return out

    t.opt.step = nan_update
    res = t.run()
    assert res.status == "nan" and res.step == 3 and "after the update" in res.message
    assert "last good checkpoint (step 3)" in res.message and latest(tmp_path).name == "ckpt-000003"
    for d in tmp_path.glob("ckpt-*"):  # every checkpoint on disk is finite
        for k, v in load_file(d / "model.safetensors").items():
            assert torch.isfinite(v).all(), (d.name, k)


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": -5}, {"warmup": -10}, {"lr": 0.0}, {"lr": float("nan")},
                                 {"batch_size": 0}, {"clip": -1.0}, {"min_lr_ratio": 2.0}])
def test_nonsense_config_is_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Trainer(model(), batches(), dataclasses.replace(CFG, **bad))


def test_resume_refuses_another_seed_or_data_and_same_run_is_bitwise(tmp_path):
    straight = Trainer(model(), batches(), CFG, progress=False).run()
    Trainer(model(), batches(), CFG, run_dir=tmp_path, progress=False).run(until=3)
    with pytest.raises(ValueError, match="initial weights"):
        Trainer(model(seed=1), batches(), CFG, run_dir=tmp_path, progress=False)
    other = STREAM.clone()
    other[100] = (other[100] + 1) % 64
    with pytest.raises(ValueError, match="training tokens"):
        Trainer(model(), batches(other), CFG, run_dir=tmp_path, progress=False)
    resumed = Trainer(model(), batches(), CFG, run_dir=tmp_path, progress=False).run()
    assert resumed.steps.loss.tolist() == straight.steps.loss.tolist()


@pytest.mark.parametrize("other", [dict(seed=2), dict(batch_size=2), dict(seq_len=8), dict(shuffle=False),
                                   dict(bos_id=1)], ids=lambda d: next(iter(d)))
def test_resume_refuses_another_data_order(tmp_path, other):
    """The same tokens batched in another order (shuffle seed, batch size, window, no shuffle, BOS) would resume
    silently on other batches than the uninterrupted run's: refused in one line naming what differs."""
    Trainer(model(), batches(), CFG, run_dir=tmp_path, progress=False).run(until=3)
    kw = {**dict(seq_len=16, batch_size=4, bos_id=0, seed=1), **other}
    order = TokenBatches(STREAM, kw.pop("seq_len"), kw.pop("batch_size"), kw.pop("bos_id"), **kw)
    with pytest.raises(ValueError, match=f"another data order.*{next(iter(other))}"):
        Trainer(model(), order, CFG, run_dir=tmp_path, progress=False)


def test_resume_refuses_other_validation_batches(tmp_path):
    """Validation windows of another length would change every later validation loss: refused like the training
    batches; the same ones resume."""
    Trainer(model(), batches(), CFG, val=batches(), run_dir=tmp_path, progress=False).run(until=3)
    with pytest.raises(ValueError, match="another data order.*val_seq_len"):
        Trainer(model(), batches(), CFG, val=TokenBatches(STREAM, 8, 4, 0, seed=1), run_dir=tmp_path, progress=False)
    assert Trainer(model(), batches(), CFG, val=batches(), run_dir=tmp_path, progress=False).run().status == "done"


def test_run_dir_with_other_files_is_refused_untouched(tmp_path):
    (tmp_path / "ckpt-mine").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="not a training run|did not write"):
        Trainer(model(), batches(), CFG, run_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-mine", "notes.txt"]


@pytest.mark.parametrize("kill_at", ["rename", "rmtree"])
def test_a_kill_while_a_step_is_saved_again_keeps_a_whole_checkpoint(tmp_path, monkeypatch, kill_at):
    """The last step is saved twice (after its update, then with the final evaluation). Killed just before the
    second one is renamed into place, or halfway through deleting a step-6 checkpoint folder, the run still resumes
    and ends with the uninterrupted run's losses."""
    import shutil
    from pathlib import Path

    from interp.train import checkpoint as C
    straight = Trainer(model(), batches(), CFG, val=batches(), progress=False).run()
    real_rename, real_rmtree, renames = Path.rename, shutil.rmtree, []

    def rename(self, target):
        if Path(target).name == "ckpt-000006":
            renames.append(target)
            if kill_at == "rename" and len(renames) == 2:
                raise KeyboardInterrupt("killed")
        return real_rename(self, target)

    def rmtree(p, *a, **k):
        if kill_at == "rmtree" and (Path(p) / "state.json").is_file() and '"step": 6' in (Path(p) / "state.json"
                                                                                          ).read_text():
            (Path(p) / "model.safetensors").unlink()   # half deleted
            raise KeyboardInterrupt("killed")
        return real_rmtree(p, *a, **k)

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(C.shutil, "rmtree", rmtree)
    with pytest.raises(KeyboardInterrupt):
        Trainer(model(), batches(), CFG, val=batches(), run_dir=tmp_path, progress=False).run()
    monkeypatch.undo()
    resumed = Trainer(model(), batches(), CFG, val=batches(), run_dir=tmp_path, progress=False).run()
    assert resumed.status == "done" and resumed.final_val_loss == straight.final_val_loss
    assert resumed.steps.loss.tolist() == straight.steps.loss.tolist()
    assert latest(tmp_path).name == "ckpt-000006"
