"""interp.train: bitwise resume, NaN stop with the last good checkpoint intact, schedule and telemetry
against references computed here, spike detection, the CLI's errors, and the shipped zoo's losses."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

import interp
from interp.data import TokenBatches
from interp.train import TrainConfig, Trainer, fine_tune, lr_at
from interp.train.checkpoint import latest

TINY = dict(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=64)
STREAM = torch.randint(2, 64, (6000,), generator=torch.Generator().manual_seed(0))


def _model(strategy="pre-ln"):
    kw = {"norm_kwargs": {"warmup_iters": 3}} if strategy in ("powernorm", "unified-norm") else {}
    return interp.zoo.build(strategy, **TINY, **kw)


def _batches(seed=1):
    return TokenBatches(STREAM, 16, 4, bos_id=0, seed=seed)


CFG = TrainConfig(steps=8, batch_size=4, seq_len=16, warmup=2, eval_every=3, eval_batches=2, ckpt_every=2)


@pytest.mark.parametrize("strategy", ["pre-ln", "unified-norm", "td-ln"])
def test_resume_after_kill_gives_a_bitwise_identical_loss_curve(tmp_path, strategy):
    straight = Trainer(_model(strategy), _batches(), CFG, val=_batches(), progress=False).run()
    Trainer(_model(strategy), _batches(), CFG, val=_batches(), run_dir=tmp_path, progress=False).run(until=4)
    assert latest(tmp_path).name == "ckpt-000004"
    fresh = _model(strategy)   # a new process would build a new model and trainer from the directory
    resumed = Trainer(fresh, _batches(), CFG, val=_batches(), run_dir=tmp_path, progress=False).run()
    assert resumed.status == "done" and len(resumed.steps) == CFG.steps
    assert resumed.steps.loss.tolist() == straight.steps.loss.tolist()          # bitwise
    assert resumed.steps.grad_norm.tolist() == straight.steps.grad_norm.tolist()
    assert resumed.evals == straight.evals and resumed.final_val_loss == straight.final_val_loss


@pytest.mark.parametrize("strategy", ["powernorm", "unified-norm"])
def test_resume_logs_the_same_layer_telemetry_as_an_uninterrupted_run(tmp_path, strategy):
    """The step after a resume compares the batch, running and divisor statistics with the step before the kill,
    as the uninterrupted run does (no NaN where the straight run has a value)."""
    straight = Trainer(_model(strategy), _batches(), CFG, val=_batches(), progress=False).run()
    Trainer(_model(strategy), _batches(), CFG, val=_batches(), run_dir=tmp_path, progress=False).run(until=4)
    resumed = Trainer(_model(strategy), _batches(), CFG, val=_batches(), run_dir=tmp_path, progress=False).run()
    a, b = straight.layers, resumed.layers
    assert len(a) == len(b) and a[["step", "group", "site", "metric"]].equals(b[["step", "group", "site", "metric"]])
    same = (a.value == b.value) | (a.value.isna() & b.value.isna())
    assert same.all(), b[~same]


def test_nan_mid_run_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    def poison(trainer):
        if trainer.step == 5:
            with torch.no_grad():
                trainer.model.blocks[0].mlp.up.weight[0, 0] = float("nan")

    res = Trainer(_model(), _batches(), CFG, run_dir=tmp_path, callbacks=[poison], progress=False).run()
    assert res.status == "nan" and res.step == 5
    assert "step 5" in res.message and "last good checkpoint (step 4)" in res.message
    assert res.message in capsys.readouterr().err
    ck = latest(tmp_path)
    assert ck.name == "ckpt-000004"
    # the checkpoint equals an independent clean run stopped after 4 updates, and is finite
    ref = Trainer(m := _model(), _batches(), CFG, progress=False)
    ref.run(until=4)
    saved = load_file(ck / "model.safetensors")
    for k, v in m.state_dict().items():
        if k in saved:
            assert torch.equal(saved[k], v), k
            assert torch.isfinite(saved[k].float()).all()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "nan"


def test_schedule_is_linear_warmup_then_cosine_to_min():
    peak, warm, total = 1e-3, 10, 110
    assert math.isclose(lr_at(0, peak, warm, total), peak / 10)
    assert math.isclose(lr_at(9, peak, warm, total), peak)
    assert math.isclose(lr_at(60, peak, warm, total), peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert math.isclose(lr_at(110, peak, warm, total), 0.1 * peak)


@pytest.mark.parametrize("compiled", [True, False], ids=["kernels", "torch"])
def test_logged_grad_norms_and_update_ratios_match_direct_computation(compiled, monkeypatch):
    """Both forms of the telemetry (compiled passes reading in place, flat float64 vectors) against float64 sums
    taken parameter by parameter."""
    from interp.train import telemetry_kernels
    if not compiled:
        monkeypatch.setattr(telemetry_kernels, "usable", lambda tensors: False)
    model = _model()
    seen = {}

    def grab(trainer):   # before step 3: the weights the update ratio is relative to
        if trainer.step == 3:
            seen["w"] = {n: p.detach().clone() for n, p in model.named_parameters()}

    cfg = TrainConfig(steps=4, batch_size=4, seq_len=16, warmup=1, clip=None, eval_every=100)
    res = Trainer(model, _batches(), cfg, callbacks=[grab], progress=False).run()
    grads = {n: p.grad for n, p in model.named_parameters()}   # gradients of the last (4th) update
    total = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
    assert math.isclose(res.steps.grad_norm.iloc[-1], total, rel_tol=1e-9)
    layer0 = math.sqrt(sum(float(g.double().pow(2).sum()) for n, g in grads.items() if n.startswith("blocks.0.")))
    rows = res.layers[(res.layers.step == 3) & (res.layers.group == "0")].set_index("metric")["value"]
    assert math.isclose(rows["grad_norm"], layer0, rel_tol=1e-9)
    w0, w1 = seen["w"], {n: p.detach() for n, p in model.named_parameters()}
    num = sum(float((w1[n].double() - w0[n].double()).pow(2).sum()) for n in w0 if n.startswith("blocks.0."))
    den = sum(float(w0[n].double().pow(2).sum()) for n in w0 if n.startswith("blocks.0."))
    assert math.isclose(rows["update_ratio"], math.sqrt(num / den), rel_tol=1e-9)


def test_batch_statistic_fluctuation_is_logged_for_powernorm():
    model = _model("powernorm")
    cfg = TrainConfig(steps=3, batch_size=4, seq_len=16, warmup=1, eval_every=100)
    prev = {}

    def record(trainer):
        for n, m in model.named_modules():
            if getattr(m, "last_x2", None) is not None:
                prev[(trainer.step - 1, n)] = m.last_x2.clone()

    res = Trainer(model, _batches(), cfg, callbacks=[record], progress=False).run()
    x2_1, x2_0 = prev[(1, "blocks.1.ln2")], prev[(0, "blocks.1.ln2")]
    got = res.layers.query("step == 1 and site == 'blocks.1.ln2'").set_index("metric")["value"]
    assert math.isclose(got["bstat_x2_mean"], float(x2_1.double().mean()), rel_tol=1e-9)
    assert math.isclose(got["bstat_x2_rel_change"], float((x2_1 - x2_0).double().norm() / x2_0.double().norm()),
                        rel_tol=1e-6)


@pytest.mark.parametrize("strategy,buf", [("powernorm", "running_phi"), ("unified-norm", "running_var")])
def test_running_statistic_fluctuation_is_logged_for_batch_statistic_norms(strategy, buf):
    model = _model(strategy)   # statistics warm-up of 3 steps: steps 3.. move the running buffer by EMA only
    cfg = TrainConfig(steps=5, batch_size=4, seq_len=16, warmup=1, eval_every=2)
    snap = {}

    def record(trainer):   # runs before step s: the buffers as step s − 1 left them
        for n, m in model.named_modules():
            if hasattr(m, buf):
                snap[(trainer.step - 1, n)] = getattr(m, buf).detach().double().clone()

    res = Trainer(model, _batches(), cfg, val=_batches(), callbacks=[record], progress=False).run()
    sites = [n for n, m in model.named_modules() if hasattr(m, buf)]
    for n in sites:
        snap[(cfg.steps - 1, n)] = getattr(model.get_submodule(n), buf).detach().double()
    lay = res.layers[res.layers.metric.str.startswith("rstat_")]
    assert sorted(set(lay.site)) == sorted(sites) and len(lay) == 2 * cfg.steps * len(sites)
    for n in sites:
        got = lay[lay.site == n].pivot(index="step", columns="metric", values="value")
        assert math.isnan(got.loc[0, "rstat_x2_rel_change"])   # no previous value at the first step
        for s in range(cfg.steps):
            assert math.isclose(got.loc[s, "rstat_x2_mean"], float(snap[(s, n)].mean()), rel_tol=1e-12)
        for s in range(1, cfg.steps):
            want = float((snap[(s, n)] - snap[(s - 1, n)]).norm() / snap[(s - 1, n)].norm())
            assert want > 0 and math.isclose(got.loc[s, "rstat_x2_rel_change"], want, rel_tol=1e-9)


@pytest.mark.parametrize("strategy", ["powernorm", "unified-norm"])
def test_the_divisor_statistic_is_logged_for_batch_statistic_norms(strategy):
    """dstat: the second moment the training forward divides by, rebuilt here from the norms' definitions
    (statistics warm-up of 3 steps; Unified's window is 4): PowerNorm divides by the batch ψ² in warm-up, then
    by the running ψ² as the previous step left it; Unified by the batch σ² up to its window, then by the
    geometric mean of the last 4 batch statistics."""
    model = _model(strategy)
    cfg = TrainConfig(steps=8, batch_size=4, seq_len=16, warmup=1, eval_every=100)
    x2, run = {}, {}

    def record(trainer):   # before step s: step s − 1's batch statistic and the buffer it left
        for n, m in model.named_modules():
            if getattr(m, "last_x2", None) is not None:
                x2[(trainer.step - 1, n)] = m.last_x2.double().clone()
                run[(trainer.step - 1, n)] = getattr(m, "running_phi", getattr(m, "running_var", None)).double().clone()

    res = Trainer(model, _batches(), cfg, callbacks=[record], progress=False).run()
    sites = [n for n, m in model.named_modules() if hasattr(m, "last_divisor")]
    for n in sites:
        x2[(cfg.steps - 1, n)] = model.get_submodule(n).last_x2.double()

    def divisor(s, n):
        it = s + 1
        if strategy == "powernorm":
            return x2[(s, n)] if it <= 3 else run[(s - 1, n)]
        return x2[(s, n)] if it <= 4 else torch.stack([x2[(s - k, n)] for k in range(4)]).log().mean(0).exp()

    lay = res.layers[res.layers.metric.str.startswith("dstat_")]
    assert sorted(set(lay.site)) == sorted(sites) and len(lay) == 2 * cfg.steps * len(sites)
    for n in sites:
        got = lay[lay.site == n].pivot(index="step", columns="metric", values="value")
        assert math.isnan(got.loc[0, "dstat_x2_rel_change"])
        for s in range(1, cfg.steps):
            d, p = divisor(s, n), divisor(s - 1, n)
            assert math.isclose(got.loc[s, "dstat_x2_mean"], float(d.mean()), rel_tol=1e-6)
            assert math.isclose(got.loc[s, "dstat_x2_rel_change"], float((d - p).norm() / p.norm()), rel_tol=1e-5)


def test_tokens_count_what_the_batches_hold():
    """tokens (seen before the step) and tokens_per_s count the windows the batches really hold, even where the
    config's batch_size / seq_len say otherwise: step × 4 sequences × 16 tokens here."""
    cfg = TrainConfig(steps=3, batch_size=16, seq_len=128, warmup=1, eval_every=100)
    res = Trainer(_model(), _batches(), cfg, progress=False).run()
    assert res.steps.tokens.tolist() == [0, 64, 128]


def test_a_loss_jump_is_flagged_as_a_spike():
    from interp.train import lm_loss

    def jumpy(model, batch, use_cond):
        loss = lm_loss(model, batch, use_cond)
        return loss * 3 if model.training and jumpy.calls == 9 else loss

    def count(trainer):
        jumpy.calls = trainer.step

    cfg = TrainConfig(steps=12, batch_size=4, seq_len=16, warmup=1, lr=1e-4, eval_every=100, spike_window=5)
    res = Trainer(_model(), _batches(), cfg, callbacks=[count], loss_fn=jumpy, progress=False).run()
    assert res.steps.spike.tolist() == [i == 9 for i in range(12)]


def test_resume_with_another_config_is_refused(tmp_path):
    Trainer(_model(), _batches(), CFG, run_dir=tmp_path, progress=False).run(until=2)
    with pytest.raises(ValueError, match="another config"):
        Trainer(_model(), _batches(), TrainConfig(**{**CFG.to_dict(), "lr": 1.0}), run_dir=tmp_path, progress=False)


def test_fine_tune_learns_a_repeating_sequence():
    stream = torch.arange(2, 18).repeat(200)   # fully predictable after one period
    model = _model()
    res = fine_tune(model, stream, steps=40, lr=1e-2, batch_size=4, seq_len=16, progress=False, log_layers=False)
    assert res.status == "done" and res.steps.loss.iloc[0] > math.log(64) - 0.2
    assert res.steps.loss.tail(5).mean() < 0.25 * res.steps.loss.iloc[0]


def test_cli_errors_are_one_line(capsys):
    from interp.cli import main
    assert main(["train", "not-a-strategy", "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("interp: error: unknown strategy 'not-a-strategy'") and "\n" not in err
    assert main(["train"]) == 1
    assert "--zoo" in capsys.readouterr().err


@pytest.fixture(scope="module")
def shipped():
    from interp.data import (DATA_DIR, TOKENIZER_PATH, encode_corpus, load_corpus, load_tokenizer, split_by_book,
                             tokenizer_hash)
    mpath = DATA_DIR / "zoo" / "manifest.json"
    if not mpath.is_file():
        pytest.skip("data/zoo has not been trained (interp train --zoo)")
    manifest = json.loads(mpath.read_text())
    corpus = load_corpus("kjv")
    tok = load_tokenizer(TOKENIZER_PATH)
    stream = encode_corpus(split_by_book(corpus)[1], tok)
    n, t = 48, manifest["size"]["n_ctx"]
    starts = torch.arange(n) * t
    x = torch.stack([torch.cat([torch.tensor([tok.bos_id]), stream[s:s + t]]) for s in starts.tolist()])
    hashes_ok = (manifest["data"]["tokenizer_sha256"] == tokenizer_hash(TOKENIZER_PATH)
                 and manifest["data"]["corpus"]["sha256"] == corpus.hash)
    return manifest, x, starts.double().div(len(stream)).float(), hashes_ok, DATA_DIR / "zoo"


@pytest.mark.parametrize("name", [n for n in interp.STRATEGIES if not n.startswith("mdlm")])  # MDLM: test_mdlm.py
def test_shipped_zoo_model_loads_and_beats_the_unigram_baseline(shipped, name):
    """A checkpoint in data/zoo: ≤ 5 MB, hashes match the shipped corpus/tokenizer, and its validation loss
    (recomputed here with a plain log-softmax) agrees with the manifest and is ≥ 0.4 nats/token below the unigram baseline."""
    manifest, x, cond, hashes_ok, root = shipped
    assert hashes_ok
    assert (root / name / "model.safetensors").stat().st_size <= 5 * 2 ** 20
    model = interp.zoo.load(root / name)
    with torch.no_grad():
        logits = model(x[:, :-1], cond=cond) if model.cfg.conditioned else model(x[:, :-1])
    loss = -logits.double().log_softmax(-1).gather(-1, x[:, 1:, None]).mean().item()
    assert abs(loss - manifest["models"][name]["final_val_loss"]) < 0.3, loss
    baseline = manifest["baselines_nats_per_token"]["unigram_xent_val"]
    assert loss < baseline - 0.4, f"{name}: validation loss {loss:.2f} vs unigram {baseline:.2f}"
