"""A killed collection resumes only with the same model weights, the same data and the same collectors: another
seed of the same size, another token file of the same length or another text stream is refused before anything
is merged; the same run resumed equals the uninterrupted run bit for bit (reference: one uninterrupted pass)."""
import numpy as np
import pytest
import torch

import interp
from interp.collectors import MassiveActivations, ResidualStats
from interp.collectors.stream import TokenFile
from interp.data import TOKENIZER_PATH
from interp.fingerprint import DataChanged, sha256_model, sha256_tensors
from interp.tokenize import load_tokenizer

import faults  # noqa: E402  (tests/faults.py)

N_CTX, BATCH = 16, 2
SIZE = {"n_layers": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_ctx": N_CTX, "d_vocab": 4096}


def model(seed=0):
    m = interp.zoo.build("pre-ln", seed=seed, **SIZE)
    m.tokenizer = load_tokenizer(TOKENIZER_PATH)
    return m.eval()


def collectors():
    return [ResidualStats(), MassiveActivations()]


def tokens(path, seed):
    np.save(path, np.random.default_rng(seed).integers(0, 4096, N_CTX * 9).astype(np.uint16))
    return path


def texts(words):
    return (f"{w} and the {w} were in the beginning of all things, said he" for w in words)


def kill(monkeypatch, m, data, state, after=2):
    with faults.fail_after(after), pytest.raises(RuntimeError, match="injected failure"):
        interp.collect(m, data, collectors(), batch_size=BATCH, state_dir=state, checkpoint_every=1, progress=False)
    assert any(state.glob("rank*.safetensors"))


def resume(m, data, state):
    return interp.collect(m, data, collectors(), batch_size=BATCH, state_dir=state, checkpoint_every=1,
                          progress=False)


def same(a, b):
    for c, st in a.states.items():
        for k, v in st.items():
            assert torch.equal(b.states[c][k], v), f"{c}/{k}"


def test_model_hash_sees_one_changed_weight():
    m = model()
    h = sha256_model(m)
    assert h == sha256_model(model()) and h != sha256_model(model(seed=1))
    with torch.no_grad():
        next(m.parameters()).flatten()[0] += 1e-6
    assert sha256_model(m) != h
    assert sha256_tensors({"a": torch.zeros(2)}) != sha256_tensors({"a": torch.zeros(2, dtype=torch.float64)})


def test_token_file_resume_refuses_other_seed_and_other_file(tmp_path, monkeypatch):
    f0, f1 = tokens(tmp_path / "a.npy", 0), tokens(tmp_path / "b.npy", 1)  # same length, other tokens
    ref = resume(model(), TokenFile(f0), tmp_path / "unused")
    state = tmp_path / "state"
    kill(monkeypatch, model(), TokenFile(f0), state)
    saved = {p: p.read_bytes() for p in state.iterdir()}
    with pytest.raises(ValueError, match="different collection.*the model's weights"):
        resume(model(seed=1), TokenFile(f0), state)
    with pytest.raises(ValueError, match="different collection.*the token file's content"):
        resume(model(), TokenFile(f1), state)
    assert {p: p.read_bytes() for p in state.iterdir()} == saved  # the refused runs left the state untouched
    got = resume(model(), TokenFile(f0), state)
    assert got.meta["n_tokens"] == ref.meta["n_tokens"] == N_CTX * 9
    same(ref, got)


def test_text_stream_resume_refuses_other_text(tmp_path, monkeypatch):
    words = ["light", "water", "earth", "night", "seed", "fruit", "stars", "sea", "fowl", "beast"]
    other = words[:3] + ["grass"] + words[4:]   # the same length, one text differs inside the saved prefix
    ref = resume(model(), texts(words), tmp_path / "unused")
    state = tmp_path / "state"
    kill(monkeypatch, model(), texts(words), state, after=3)
    with pytest.raises(DataChanged, match="differs from the data"):
        resume(model(), texts(other), state)
    with pytest.raises(DataChanged):
        resume(model(), texts(words[:2]), state)   # a shorter stream that ends before the saved position
    with pytest.raises(ValueError, match="the model's weights"):
        resume(model(seed=2), texts(words), state)
    got = resume(model(), texts(words), state)
    assert got.meta["n_sequences"] == ref.meta["n_sequences"]
    same(ref, got)


def test_cli_resume_with_other_text_file_is_one_line(tmp_path, monkeypatch, capsys):
    from interp.cli import main
    m = model()
    m.save(tmp_path / "m")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(texts(["light", "water", "earth", "night", "seed", "fruit"])) + "\n")
    b.write_text("\n".join(texts(["dark", "water", "earth", "night", "seed", "fruit"])) + "\n")
    args = ["collect", str(tmp_path / "m"), "-o", str(tmp_path / "out"), "--state-dir", str(tmp_path / "st"), "--quiet",
            "--batch-size", "2", "--checkpoint-every", "1", "--collectors", "residual"]
    with faults.fail_after(2):
        assert main([*args, "--data", str(a)]) != 0
    capsys.readouterr()
    assert main([*args, "--data", str(b)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from the data" in err[0]
    assert not (tmp_path / "out").exists()
    assert main([*args, "--data", str(a)]) == 0


def test_token_file_resume_refuses_other_window_length(tmp_path, monkeypatch):
    """TokenFile(seq_len=...) cuts the file into other batches: a state of 8-token windows resumed with 16-token
    windows skipped tokens 2·2·8 .. 2·2·16 (n_tokens 112 of 144) before; now refused, naming the window."""
    f = tokens(tmp_path / "a.npy", 0)
    state = tmp_path / "state"
    kill(monkeypatch, model(), TokenFile(f, seq_len=8), state)
    with pytest.raises(ValueError, match="different collection.*the token file's window length"):
        resume(model(), TokenFile(f), state)
    got = resume(model(), TokenFile(f, seq_len=8), state)
    ref = resume(model(), TokenFile(f, seq_len=8), tmp_path / "unused")
    assert got.meta["n_tokens"] == ref.meta["n_tokens"] == N_CTX * 9
    same(ref, got)


def test_state_of_another_process_count_is_refused(tmp_path, monkeypatch):
    """A state_dir left by a run on 2 processes, rerun on 1: the rank files were ignored (the run started over
    and left them behind for ever); now refused in one line naming the file, as any other configuration is."""
    f = tokens(tmp_path / "a.npy", 0)
    state = tmp_path / "state"
    kill(monkeypatch, model(), TokenFile(f), state)
    (state / "rank000-of-001.safetensors").rename(state / "rank000-of-002.safetensors")
    with pytest.raises(ValueError, match=r"another number of processes \(rank000-of-002"):
        resume(model(), TokenFile(f), state)
