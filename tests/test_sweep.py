"""The LR sweep: its attention-logit column against hook_attn_scores, divergence at an absurd rate, seeds and resume."""
import json
import math

import pytest
import torch

from interp.train import sweep as S
from interp.zoo import build

TINY = dict(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16)


def test_max_attn_logit_matches_the_scores_hook():
    model = build("pre-ln", seed=0, **TINY, d_vocab=97, init_std=0.3)
    tokens = torch.randint(0, 97, (3, 12), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    want = max(cache[f"blocks.{l}.attn.hook_attn_scores"].nan_to_num(neginf=0.0).abs().max().item() for l in range(2))
    assert S.max_attn_logit(model, tokens) == pytest.approx(want, rel=1e-5)
    with torch.no_grad():
        model.blocks[0].attn.qkv.weight[0, 0] = float("inf")
    assert math.isnan(S.max_attn_logit(model, tokens))


@pytest.fixture(scope="module")
def tiny_sweep():
    return S.lr_sweep(["no-norm", "pre-rmsnorm-qk"], lrs=(1e-4, 1e3), steps=6, batch_size=2, size=TINY,
                      seeds=(0, 1), progress=False)


def test_sweep_rows_and_divergence(tiny_sweep):
    df = tiny_sweep
    assert len(df) == 8 and set(df.seed) == {0, 1}
    assert list(df.columns[:3]) == ["strategy", "seed", "lr"] and "max_attn_logit" in df
    div = df.set_index(["strategy", "seed", "lr"]).diverged
    assert div.loc[("no-norm", 0, 1e3)] and div.loc[("no-norm", 1, 1e3)]  # Adam at lr 1000: every weight ±1000
    assert not div.loc[("no-norm", 0, 1e-4)]


def test_parallel_jobs_give_the_serial_rows(tiny_sweep):
    """--jobs runs each run in a worker process: the rows (and their order) equal the serial sweep's."""
    import pandas as pd
    seen = []
    par = S.lr_sweep(["no-norm", "pre-rmsnorm-qk"], lrs=(1e-4, 1e3), steps=6, batch_size=2, size=TINY,
                     seeds=(0, 1), progress=False, jobs=2, threads=torch.get_num_threads(),
                     on_row=lambda df: seen.append(len(df)))
    assert seen == list(range(1, 9))
    pd.testing.assert_frame_equal(par.drop(columns="wall_s"), tiny_sweep.drop(columns="wall_s"), rtol=1e-6)
    with pytest.raises(ValueError, match="jobs and threads must be at least 1"):
        S.lr_sweep(["no-norm"], lrs=(1e-4,), jobs=0)


def test_resume_keeps_done_rows(tiny_sweep, monkeypatch):
    calls = []
    monkeypatch.setattr(S, "sweep_run", lambda s, lr, k, *a: calls.append((s, k, lr)) or dict(
        strategy=s, seed=k, lr=lr, diverged=False))
    seen = []
    out = S.lr_sweep(["no-norm", "pre-rmsnorm-qk"], lrs=(1e-4, 1e3, 1e-2), steps=6, batch_size=2, size=TINY,
                     seeds=(0, 1), progress=False, done=tiny_sweep, on_row=lambda df: seen.append(len(df)))
    assert sorted(calls) == sorted((s, k, 1e-2) for s in ("no-norm", "pre-rmsnorm-qk") for k in (0, 1))
    assert len(out) == 12 and seen == [9, 10, 11, 12]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown strategy 'pre-foo'"):
        S.lr_sweep(["pre-foo"], progress=False)
    with pytest.raises(ValueError, match="learning rates must be positive"):
        S.lr_sweep(["pre-ln"], lrs=(1e-3, float("nan")), progress=False)
    # one step: the divergence test compared that step's loss with itself, so every run read 'diverged'
    with pytest.raises(ValueError, match="a sweep run needs at least 2 steps"):
        S.lr_sweep(["pre-ln"], lrs=(1e-3,), steps=1, progress=False)


def intact_sweep(out):
    """A finished one-run sweep folder with the settings of RESUME (so --resume has nothing left to train)."""
    out.mkdir()
    (out / ".interp-output").write_text('{"kind": "sweep"}\n')
    (out / "sweep.csv").write_text("strategy,seed,lr,final_loss,diverged\npre-ln,0,0.001,5.0,False\n")
    (out / "sweep.json").write_text(json.dumps({
        "size": S.SWEEP_SIZE, "lrs": [0.001], "steps": 2, "batch_size": 8, "clip": None, "corpus": "kjv",
        "seeds": [0], "threads": 1, "columns": "see interp/train/sweep.py"}))
    return out


RESUME = ["sweep", "--strategies", "pre-ln", "--lrs", "1e-3", "--steps", "2", "--resume", "--quiet", "--out"]


def test_resume_of_the_intact_sweep_runs(tmp_path):
    """The control of the next test: the intact folder resumes (nothing left to train)."""
    from interp.cli import main
    out = intact_sweep(tmp_path / "sw")
    assert main([*RESUME, str(out)]) == 0


@pytest.mark.parametrize("name,data,why", [
    ("sweep.json", b"{not json", "not JSON"),
    ("sweep.json", b'{"lrs": [0.001], "se\xff\xfeds": 1}', "not UTF-8"),
    ("sweep.json", b"[1, 2]", "not an object"),
    ("sweep.csv", b"", "not a CSV table"),
    ("sweep.csv", b"\xff\xfe\x00junk\n\x00\x00", "not UTF-8"),
    ("sweep.csv", b"a,b\n1,2\n", "no strategy or lr column"),
])
def test_resume_of_a_damaged_sweep_names_the_file(tmp_path, capsys, name, data, why):
    """`interp sweep --resume` on a sweep whose settings or table is damaged: one line naming the file and what to
    do, before any training; the folder is left byte for byte as it was."""
    from interp.cli import main
    out = intact_sweep(tmp_path / "sw")
    (out / name).write_bytes(data)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*RESUME, str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / name) in err[0] and why in err[0] and "--force" in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("strategy", ["mdlm-ln", "pre-ln"])
def test_a_run_trains_with_the_zoo_objective_of_its_strategy(strategy):
    """A masked-diffusion preset is swept on its own loss (the MDLM bound), not on next-token cross-entropy, which
    a bidirectional model can read off its input; a causal preset keeps next-token cross-entropy."""
    from types import SimpleNamespace

    from interp.data import TokenBatches
    from interp.train.mdlm import mdlm_loss
    from interp.train.trainer import lm_loss
    stream = torch.randint(2, 97, (4000,), generator=torch.Generator().manual_seed(0))
    data = SimpleNamespace(train_tokens=stream, val_tokens=stream[:500], tokenizer=SimpleNamespace(bos_id=0))
    size = {**TINY, "d_vocab": 97}
    row = S.sweep_run(strategy, 1e-3, 0, data, size, 2, 2, None)
    model = build(strategy, seed=0, **size).train()
    torch.manual_seed(0)   # the Trainer seeds the global RNG with the run's seed
    batch = TokenBatches(stream, TINY["n_ctx"], 2, 0, seed=0).batch(0)
    fn = mdlm_loss if strategy.startswith("mdlm") else lm_loss
    with torch.no_grad():
        want = float(fn(model, batch, bool(getattr(model.cfg, "conditioned", False))))
    assert row["first_loss"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("strategy", ["mdlm-tdln", "mdlm-adaln"])
def test_an_mdlm_runs_attention_logit_is_measured_on_the_input_its_loss_gives_it(strategy):
    """An MDLM preset never trains on clean text at t = 0: its max_attn_logit is the largest |q·k|/√d_head that
    hook_attn_scores sees inside its own eval-mode loss on the first validation batch (masked, cond = t), not the
    clean t = 0 forward's. A run at lr 1e-12 leaves the weights at their seed-0 init (to float32 rounding)."""
    from types import SimpleNamespace

    from interp.data import TokenBatches
    from interp.train.mdlm import mdlm_loss
    stream = torch.randint(2, 97, (4000,), generator=torch.Generator().manual_seed(0))
    data = SimpleNamespace(train_tokens=stream, val_tokens=stream[:500], tokenizer=SimpleNamespace(bos_id=0))
    size = {**TINY, "d_vocab": 97, "init_std": 0.3}  # [MASK]'s embedding as large as the tokens'
    row = S.sweep_run(strategy, 1e-12, 0, data, size, 2, 4, None)
    model = build(strategy, seed=0, **size).eval()
    held = TokenBatches(stream[:500], TINY["n_ctx"], 4, 0, shuffle=False).first(1)[0]
    seen = []
    hooks = [(f"blocks.{l}.attn.hook_attn_scores",
              lambda x, hook: seen.append(x.nan_to_num(neginf=0.0).abs().max().item())) for l in range(2)]
    with model.hooks(fwd_hooks=hooks), torch.no_grad():
        mdlm_loss(model, held, True)
        in_loss = max(seen)
        seen.clear()
        model(held.x)
        clean = max(seen)
    assert row["max_attn_logit"] == pytest.approx(in_loss, rel=1e-5)
    assert clean != pytest.approx(in_loss, rel=1e-4)  # the clean t = 0 forward reads otherwise


def test_a_run_builds_the_model_with_the_zoos_exception_for_its_strategy():
    """DyT's zoo exception (an unembedding bias b_U set to the log unigram frequencies of the training tokens) is
    part of the model the sweep trains: its first loss is that of DyT with b_U = log((count + 1) / total), which a
    DyT without b_U (what the sweep built before) does not give."""
    from types import SimpleNamespace

    from interp.data import TokenBatches
    from interp.train.trainer import lm_loss
    stream = torch.randint(2, 97, (4000,), generator=torch.Generator().manual_seed(0)) % 40 + 2  # skewed unigram
    data = SimpleNamespace(train_tokens=stream, val_tokens=stream[:500], tokenizer=SimpleNamespace(bos_id=0))
    size = {**TINY, "d_vocab": 97}
    row = S.sweep_run("dyt", 1e-3, 0, data, size, 2, 2, None)
    batch = TokenBatches(stream, TINY["n_ctx"], 2, 0, seed=0).batch(0)
    losses = {}
    for with_bias in (True, False):
        model = build("dyt", seed=0, **size, unembed_bias=with_bias).train()
        if with_bias:
            counts = torch.tensor([float((stream == v).sum()) + 1 for v in range(97)], dtype=torch.float64)
            with torch.no_grad():
                model.unembed.bias.copy_((counts / counts.sum()).log().float())
        with torch.no_grad():
            losses[with_bias] = float(lm_loss(model, batch, False))
    assert row["first_loss"] == pytest.approx(losses[True], rel=1e-5)
    assert abs(losses[False] - losses[True]) > 0.1


def test_the_default_out_is_the_repositorys_data_sweep_from_any_folder(tmp_path, monkeypatch, capsys):
    """--out defaulted to 'data/sweep' under the current folder, while the report reads the sweep beside the
    repository's data/zoo: run from elsewhere, the sweep went where the report never looks. From another folder the
    default is the repository's data/sweep (it holds the shipped sweep, so without --resume it is refused)."""
    from interp.cli import main
    from interp.data import DATA_DIR
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--strategies", "pre-ln", "--lrs", "1e-3", "--steps", "2", "--quiet"]) == 1
    assert f"--out {DATA_DIR / 'sweep'} already holds a sweep" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
