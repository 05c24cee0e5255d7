"""interp.train.fast: the cheaper step (fused AdamW, compiled loss) trains like the plain eager step.

The reference is the eager path: the for-loop AdamW and the loss run op by op (Trainer(fused=False,
compile=False)), on the same seed and batches. Fused and compiled kernels round differently, so losses and
weights agree to a stated float tolerance (measured: ≤ ~1e-6 relative on losses after 6 steps), not bitwise;
where the compiled path does not apply (batch-statistic norms, no C++ compiler, a compiler failure) the step is
the eager one and the only difference left is the fused optimizer's rounding.
"""
import pytest
import torch

import interp
import interp.train.fast as fast
from interp.data import TokenBatches
from interp.train import TrainConfig, Trainer
from interp.train.mdlm import mdlm_loss

TINY = dict(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=64)
STREAM = torch.randint(2, 64, (6000,), generator=torch.Generator().manual_seed(0))
CFG = TrainConfig(steps=6, batch_size=4, seq_len=16, warmup=2, eval_every=3, eval_batches=2, ckpt_every=100)
LOSS_RTOL, WEIGHT_ATOL = 1e-4, 1e-4   # float32 rounding of different kernels, grown over 6 AdamW steps


def _model(strategy):
    kw = {"norm_kwargs": {"warmup_iters": 3}} if strategy in ("powernorm", "unified-norm") else {}
    return interp.zoo.build(strategy, **TINY, **kw)


def _run(strategy, loss_fn=None, **fast_kw):
    model = _model(strategy)
    batches = TokenBatches(STREAM, 16, 4, bos_id=0, seed=1)
    val = TokenBatches(STREAM, 16, 4, bos_id=0, shuffle=False)
    kw = {"loss_fn": loss_fn} if loss_fn is not None else {}
    tr = Trainer(model, batches, CFG, val=val, progress=False, **kw, **fast_kw)
    return tr, tr.run(), model


def _close(a, b):
    ta, ma = a[1], a[2]
    tb, mb = b[1], b[2]
    assert ta.status == tb.status == "done"
    torch.testing.assert_close(torch.tensor(ta.steps.loss.tolist()), torch.tensor(tb.steps.loss.tolist()),
                               rtol=LOSS_RTOL, atol=0)
    torch.testing.assert_close(torch.tensor(ta.steps.grad_norm.tolist()), torch.tensor(tb.steps.grad_norm.tolist()),
                               rtol=1e-3, atol=1e-6)
    assert ta.steps.clipped.tolist() == tb.steps.clipped.tolist()
    for (n, p), (_, q) in zip(ma.named_parameters(), mb.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=WEIGHT_ATOL, msg=n)
    for (n, p), (_, q) in zip(ma.named_buffers(), mb.named_buffers()):
        torch.testing.assert_close(p.float(), q.float(), rtol=1e-3, atol=1e-5, msg=n)
    assert abs(ta.final_val_loss - tb.final_val_loss) <= LOSS_RTOL * abs(tb.final_val_loss)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["pre-ln", "post-ln", "dyt", "td-ln"])
def test_compiled_fused_step_trains_like_the_eager_step(strategy):
    eager = _run(strategy, fused=False, compile=False)
    fast_ = _run(strategy, fused=True, compile=True)
    assert fast_[0].train_loss.compiled and not eager[0].train_loss.compiled
    _close(fast_, eager)


@pytest.mark.slow
def test_compiled_mdlm_step_draws_the_eager_masks():
    eager = _run("mdlm-ln", loss_fn=mdlm_loss, fused=False, compile=False)
    fast_ = _run("mdlm-ln", loss_fn=mdlm_loss, fused=True, compile=True)
    assert fast_[0].train_loss.compiled
    _close(fast_, eager)    # t and the masks come from the global RNG as in eager: same draws, same losses


@pytest.mark.parametrize("strategy", ["powernorm", "unified-norm"])
def test_batch_statistic_norms_train_eagerly_with_the_fused_optimizer(strategy, capsys):
    eager = _run(strategy, fused=False, compile=False)
    fast_ = _run(strategy, fused=True, compile=True)
    assert not fast_[0].train_loss.compiled
    assert "not compiled" in capsys.readouterr().err
    _close(fast_, eager)
    same = _run(strategy, fused=False, compile=True)   # the compile request alone changes nothing: bitwise
    assert same[1].steps.loss.tolist() == eager[1].steps.loss.tolist()


def test_without_a_cxx_compiler_the_run_says_so_and_trains_eagerly(capsys):
    import torch._inductor.config as ic
    with ic.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        tr, res, _ = _run("pre-ln", fused=False, compile=True)
    err = capsys.readouterr().err
    assert "C++ compiler" in err and "training eagerly" in err and len(err.strip().splitlines()) == 1
    assert not tr.train_loss.compiled
    assert res.steps.loss.tolist() == _run("pre-ln", fused=False, compile=False)[1].steps.loss.tolist()


def test_a_compiler_failure_on_the_first_step_falls_back_to_the_eager_step(monkeypatch, capsys):
    def broken(fn):
        def call(*a):
            torch.rand(3)   # consumes RNG before failing, as a partly run graph could
            raise RuntimeError("C++ compile error: something\ndetails")
        return call
    monkeypatch.setattr(fast, "_inductor", broken)
    tr, res, _ = _run("pre-ln", fused=False, compile=True)
    err = capsys.readouterr().err
    assert "torch.compile failed (RuntimeError: C++ compile error: something); training eagerly" in err
    assert not tr.train_loss.compiled
    assert res.steps.loss.tolist() == _run("pre-ln", fused=False, compile=False)[1].steps.loss.tolist()


@pytest.mark.parametrize("compiled", [True, False], ids=["kernels", "torch"])
def test_flat_telemetry_skips_missing_gradients_like_a_per_parameter_sum(compiled, monkeypatch):
    import math

    from interp.train import telemetry_kernels
    from interp.train.telemetry import Telemetry, group_of
    if not compiled:
        monkeypatch.setattr(telemetry_kernels, "usable", lambda tensors: False)
    model = _model("pre-ln")
    x = STREAM[:64].view(4, 16)
    model(x).logsumexp(-1).mean().backward()
    model.blocks[0].mlp.up.weight.grad = None                  # one parameter of a group without a gradient
    for n, p in model.named_parameters():
        if n.startswith("blocks.1."):
            p.grad = None                                      # a whole group without gradients
    total, per = Telemetry(model).grad_norms()
    ref: dict = {}
    for n, p in model.named_parameters():
        if p.grad is not None:
            ref[group_of(n)] = ref.get(group_of(n), 0.0) + float(p.grad.double().pow(2).sum())
    assert list(per) == list(ref) and "1" not in per           # groups in order of first appearance, as before
    for g in ref:
        assert math.isclose(per[g], math.sqrt(ref[g]), rel_tol=1e-12)
    assert math.isclose(total, math.sqrt(sum(ref.values())), rel_tol=1e-12)


@pytest.mark.slow
def test_a_compiled_run_resumes_bitwise(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, seq_len=16, warmup=2, eval_every=3, eval_batches=2, ckpt_every=2)

    def trainer(run_dir=None):
        return Trainer(_model("pre-ln"), TokenBatches(STREAM, 16, 4, bos_id=0, seed=1), cfg, run_dir=run_dir,
                       progress=False, compile=True)
    straight = trainer().run()
    trainer(tmp_path).run(until=4)
    resumed = trainer(tmp_path)          # a new model and trainer, as a new process would build them
    res = resumed.run()
    assert resumed.train_loss.compiled
    assert res.steps.loss.tolist() == straight.steps.loss.tolist()
    assert res.steps.grad_norm.tolist() == straight.steps.grad_norm.tolist()
