"""Sharded, streaming, resumable collection against the plain one-process driver (`driver.collect`) as the
reference: 2 torchrun ranks (gloo, 127.0.0.1) give the same tables as 1 process for every collector, a failing
rank stops the job naming it and leaves no results, and a resumed run equals an uninterrupted one."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from interp.collectors import (AttnLogits, GradNorms, LayerEffect, MassiveActivations, NormScales, Precision,
                               ResidualStats, Results, collect)
from interp.collectors import sharded
from interp.collectors.stream import TokenFile
from interp.device import resolve_device, resolve_dtype

import faults  # noqa: E402  (tests/faults.py)

ROOT = Path(__file__).resolve().parents[1]
N_CTX, BATCH = 16, 3
ALL = "residual,massive,layer_effect,norm_scales,grad_norms"
EVERY = ALL + ",attn_logits,precision"  # every collector interp exports, for the two-rank test


def every_collector(more=False):
    extra = [AttnLogits(), Precision()] if more else []
    return [ResidualStats(), MassiveActivations(), LayerEffect(), NormScales(), GradNorms(), *extra]


def tiny(strategy="peri-ln"):
    return interp.zoo.build(strategy, n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=N_CTX, d_vocab=512)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    tiny().save(d / "model")
    g = torch.Generator().manual_seed(1)
    flat = torch.randint(0, 512, (N_CTX * 10 + 5,), generator=g).numpy().astype(np.uint16)  # 11 windows, 4 batches
    np.save(d / "tokens.npy", flat)
    flat.tofile(d / "tokens.bin")
    return d, flat.astype(np.int64).tolist()


def windows(flat, n=N_CTX):
    return [flat[i:i + n] for i in range(0, len(flat), n)]


def assert_same(ref: Results, got: Results):
    assert list(ref.tables) == list(got.tables)
    for name in ref.tables:
        pd.testing.assert_frame_equal(ref[name].reset_index(drop=True), got[name].reset_index(drop=True),
                                      check_dtype=False, rtol=1e-9, atol=0, obj=name)
    for c, st in ref.states.items():
        for k, v in st.items():
            torch.testing.assert_close(got.states[c][k], v, rtol=1e-9, atol=0, msg=f"{c}/{k}")


def cli(args, env_extra=None, timeout=240):
    env = {**os.environ, "INTERP_DIST_TIMEOUT": "90", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "interp.cli", "collect", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_two_ranks_equal_one_process(files):
    d, flat = files
    out = d / "two"
    p = cli([str(d / "model"), "--data", str(d / "tokens.npy"), "-o", str(out), "--nproc", "2",
             "--batch-size", str(BATCH), "--collectors", EVERY, "--device", "cpu", "--quiet"])
    assert p.returncode == 0, p.stderr[-3000:]
    got = Results.load(out)
    model = interp.load_model(d / "model")
    ref = collect(model, windows(flat), every_collector(more=True), batch_size=BATCH, progress=False)
    assert got.meta["world_size"] == 2 and got.meta["n_tokens"] == len(flat) == ref.meta["n_tokens"]
    assert got.meta["state_bytes_per_rank"] == sum(v.numel() * 8 for s in ref.states.values() for v in s.values())
    assert_same(ref, got)


@pytest.mark.parametrize("mode", ["raise", "exit"])
def test_failing_rank_stops_the_job(files, mode):
    d, _ = files
    out = d / f"failed-{mode}"
    p = cli([str(d / "model"), "--data", str(d / "tokens.npy"), "-o", str(out), "--nproc", "2",
             "--batch-size", str(BATCH), "--collectors", "residual", "--device", "cpu", "--quiet"],
            env_extra=faults.env(rank=1, after=1, mode=mode))
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("interp: error: collection failed: rank 1 "), last
    assert ("injected failure" in last) if mode == "raise" else ("exited with code 3" in last)
    assert not out.exists() and not list(d.glob(".failed-*"))  # no results, no half-written temp directory


def test_resume_equals_uninterrupted(files, tmp_path, monkeypatch):
    d, flat = files
    model = interp.load_model(d / "model")
    ref = collect(model, windows(flat), every_collector(), batch_size=BATCH, progress=False)
    state = tmp_path / "state"
    with faults.fail_after(2), pytest.raises(RuntimeError, match="injected failure"):
        interp.collect(model, TokenFile(d / "tokens.npy"), every_collector(), batch_size=BATCH,
                       state_dir=state, checkpoint_every=1, progress=False)
    assert (state / "rank000-of-001.safetensors").is_file()
    ran = []
    real = sharded.run_batches
    monkeypatch.setattr(sharded, "run_batches", lambda *a, **k: ran.append(1) or real(*a, **k))
    got = interp.collect(model, TokenFile(d / "tokens.npy"), every_collector(), batch_size=BATCH,
                         state_dir=state, checkpoint_every=1, progress=False)
    assert len(ran) == 2  # batches 2 and 3 only: the first two came from the state file
    assert got.meta["n_tokens"] == len(flat) and got.meta["n_batches"] == 4
    assert_same(ref, got)
    assert not list(state.glob("*.safetensors"))  # removed once complete
    # a state file from another configuration is refused, not silently mixed in
    with faults.fail_after(1), pytest.raises(RuntimeError):
        interp.collect(model, TokenFile(d / "tokens.npy"), [ResidualStats()], batch_size=BATCH, state_dir=state,
                       checkpoint_every=1, progress=False)
    with pytest.raises(ValueError, match="different collection.*batch_size"):
        interp.collect(model, TokenFile(d / "tokens.npy"), [ResidualStats()], batch_size=2, state_dir=state,
                       progress=False)


def test_streams_equal_in_memory(files):
    d, flat = files
    model = interp.load_model(d / "model")
    ref = collect(model, windows(flat), every_collector(), batch_size=BATCH, progress=False)
    for src in (TokenFile(d / "tokens.bin", dtype="uint16"), TokenFile(d / "tokens.npy"),
                (w for w in windows(flat))):  # a one-pass generator of token lists
        assert_same(ref, interp.collect(model, src, every_collector(), batch_size=BATCH, progress=False))
    assert isinstance(TokenFile(d / "tokens.bin", dtype="uint16").tokens, np.memmap)  # read lazily, never loaded whole
    capped = interp.collect(model, TokenFile(d / "tokens.npy"), [ResidualStats()], batch_size=BATCH,
                            max_tokens=50, progress=False)
    assert capped.meta["n_tokens"] == 50
    assert_same(collect(model, windows(flat[:50]), [ResidualStats()], batch_size=BATCH, progress=False), capped)


def test_text_stream_splits_like_the_driver():
    from interp.tokenize import load_tokenizer
    model = interp.zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=N_CTX, d_vocab=4096)
    model.tokenizer = load_tokenizer(ROOT / "data" / "tokenizer.json")
    texts = ["In the beginning God created the heaven and the earth. " * 3, "And God said, Let there be light.",
             "", "And the evening and the morning were the first day."]
    ref = collect(model, texts, [ResidualStats(), MassiveActivations()], batch_size=2, max_tokens=60, progress=False)
    got = interp.collect(model, iter(texts), [ResidualStats(), MassiveActivations()], batch_size=2, max_tokens=60,
                         progress=False)
    assert got.meta["n_tokens"] == ref.meta["n_tokens"] == 60
    assert_same(ref, got)


def test_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None) is torch.float32
    with pytest.raises(ValueError, match="fp32"):
        resolve_dtype("fp16")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            interp.load_model("does-not-matter", device="cuda")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            interp.collect(tiny(), torch.zeros(2, 4, dtype=torch.long), device="cuda")
    # bf16 model: statistics still float64, and close to the fp32 run (bf16 keeps ~3 significant digits)
    toks = torch.randint(0, 512, (4, N_CTX), generator=torch.Generator().manual_seed(2))
    f32 = collect(tiny(), toks, [ResidualStats()], progress=False)
    b16 = interp.collect(tiny(), toks, [ResidualStats()], dtype="bf16", device="auto", progress=False)
    assert b16.meta["dtype"] == "bfloat16" and all(v.dtype == torch.float64 for v in b16.states["residual"].values())
    np.testing.assert_allclose(b16["residual"]["rms"], f32["residual"]["rms"], rtol=1e-2)


def test_distributed_without_launcher_says_so(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        interp.collect(tiny(), torch.zeros(2, 4, dtype=torch.long), distributed=True)


def test_a_streamed_batch_is_named_by_its_place_in_the_run():
    """A non-finite activation in the third batch (sequence 4 of 6, batch_size 2 -> batch 2, by hand) is named
    'batch 2' by a streamed (and resumable / sharded) run as by the in-memory one; it read 'batch 0' before."""
    from interp.collectors import NonFiniteError
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=64)
    with torch.no_grad():
        m.embed.weight[7] = float("inf")  # only sequence 4 holds token 7
    seqs = [[1, 2, 3]] * 4 + [[1, 7, 3], [1, 2, 3]]
    for run in (lambda: collect(m, seqs, [ResidualStats()], batch_size=2, progress=False),
                lambda: interp.collect(m, iter(seqs), [ResidualStats()], batch_size=2, progress=False)):
        with pytest.raises(NonFiniteError, match=r"blocks\.0\.hook_resid_pre .* in batch 2;"):
            run()


def test_a_streamed_bad_token_id_is_named_by_its_sequence_in_the_data():
    """An id outside the vocabulary in item 7 of a token stream is named 'sequence 7', as the in-memory driver
    names it (the streamed run said 'sequence 1': its row in the batch)."""
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=64)
    seqs = [[1, 2]] * 7 + [[1, 99]]
    for run in (lambda: collect(m, seqs, [ResidualStats()], batch_size=3, progress=False),
                lambda: interp.collect(m, iter(seqs), [ResidualStats()], batch_size=3, progress=False)):
        with pytest.raises(ValueError, match="token id 99 in sequence 7 of the data"):
            run()


def test_a_fractional_batch_size_or_unknown_overflow_is_refused(files):
    """batch_size=2.5 made a token stream one batch of everything (memory grew with the corpus) and crashed the
    in-memory driver and a TokenFile run with a TypeError; overflow='bogus' was accepted for a TokenFile."""
    d, flat = files
    model = interp.load_model(d / "model")
    for data in (windows(flat), iter(windows(flat)), TokenFile(d / "tokens.npy")):
        for bs in (2.5, 8.0, 0):
            with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1"):
                interp.collect(model, data, [ResidualStats()], batch_size=bs, progress=False)
    with pytest.raises(ValueError, match="unknown overflow 'bogus'"):
        interp.collect(model, TokenFile(d / "tokens.npy"), [ResidualStats()], overflow="bogus", progress=False)
    res = interp.collect(model, iter(windows(flat)), [ResidualStats()], batch_size=np.int64(4), progress=False)
    assert res.meta["n_batches"] == 3  # 11 windows, numpy ints still welcome


@pytest.mark.parametrize("every", [1.5, 0, -2, True, "5"])
def test_a_checkpoint_interval_that_is_not_a_positive_integer_is_refused(tmp_path, every):
    """checkpoint_every=1.5 (or True) was accepted (a state file every 3 batches, or every batch), 0 and -2 only
    when a state_dir was given, and "5" raised a TypeError; now each is one ValueError before any work."""
    for state in (None, tmp_path / "state"):
        with pytest.raises(ValueError, match=rf"^checkpoint_every must be a positive integer .*got {every!r}$"):
            interp.collect(tiny(), [[1, 2, 3]] * 4, [ResidualStats()], state_dir=state, checkpoint_every=every,
                           progress=False)
        assert not (tmp_path / "state").exists()


def test_state_dir_inside_out_is_refused_before_any_work(tmp_path, monkeypatch):
    """state_dir = out (or a folder in it): the rank file made `out` a non-results folder, so the whole collection
    ran and then the save was refused; now refused in one line before any batch runs."""
    ran = []
    real = sharded.run_batches
    monkeypatch.setattr(sharded, "run_batches", lambda *a, **k: ran.append(1) or real(*a, **k))
    out = tmp_path / "res"
    for state in (out, out / "state"):
        with pytest.raises(ValueError, match="state_dir .* lies inside out"):
            interp.collect(tiny(), [[1, 2, 3]] * 4, [ResidualStats()], state_dir=state, out=out, progress=False)
    assert not ran and not out.exists()
