"""The GGUF cache is keyed by the SHA-256 of the file's content (reference: hashlib over the bytes): another file
of the same name and size gets its own entry, the hash is computed once per unchanged file, and a failed build
leaves nothing in the cache."""
import hashlib
import os

import pytest

from interp.models import cache as C


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    built = []

    def fake_dequantize(src, out):  # stands in for transformers: the entry records which bytes it came from
        built.append(src)
        (out / "source.bin").write_bytes(src.read_bytes())

    monkeypatch.setattr(C, "_dequantize", fake_dequantize)
    monkeypatch.setattr(C, "gguf_architecture", lambda p: "llama")
    return tmp_path, built


def test_same_name_and_size_other_content_gets_its_own_entry(root):
    tmp, built = root
    a, b = tmp / "a" / "model.gguf", tmp / "b" / "model.gguf"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_bytes(b"GGUF" + bytes(range(200)))
    b.write_bytes(b"GGUF" + bytes(reversed(range(200))))   # same name, same size
    ka, kb = C.content_key("model", [a]), C.content_key("model", [b])
    assert ka == "model-" + hashlib.sha256(a.read_bytes()).hexdigest()[:20]
    assert kb == "model-" + hashlib.sha256(b.read_bytes()).hexdigest()[:20] and ka != kb
    da, db = C.dequantized(ka, gguf_path=a), C.dequantized(kb, gguf_path=b)
    assert (da / "source.bin").read_bytes() == a.read_bytes() and (db / "source.bin").read_bytes() == b.read_bytes()
    assert C.dequantized(C.content_key("model", [a]), gguf_path=a) == da and len(built) == 2  # reused, not rebuilt


def test_hash_is_computed_once_and_redone_when_the_file_changes(root, monkeypatch):
    tmp, _ = root
    f = tmp / "m.gguf"
    f.write_bytes(b"one" * 1000)
    first = C.content_sha256([f])
    assert (C.cache_root() / C.INDEX).is_file()
    real = hashlib.sha256
    calls = []
    monkeypatch.setattr(C.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert C.content_sha256([f]) == first and calls == []          # from the index
    st = f.stat()
    f.write_bytes(b"two" * 1000)                                    # same size, same mtime restored
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert C.content_sha256([f]) == real(b"two" * 1000).hexdigest() and calls
    assert C.content_sha256([f], compute=False) is not None
    g = tmp / "new.gguf"
    g.write_bytes(b"x")
    assert C.content_key("new", [g], compute=False) is None        # listing never hashes


def test_parts_hash_as_their_concatenation(root):
    tmp, _ = root
    parts = [tmp / "p1", tmp / "p2"]
    parts[0].write_bytes(b"GGUF-first-half")
    parts[1].write_bytes(b"-second-half")
    assert C.content_sha256(parts) == hashlib.sha256(b"GGUF-first-half-second-half").hexdigest()


def test_failed_build_leaves_no_entry(root, monkeypatch):
    tmp, _ = root
    f = tmp / "m.gguf"
    f.write_bytes(b"GGUF")

    def boom(src, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise ValueError("transformers could not load it")

    monkeypatch.setattr(C, "_dequantize", boom)
    with pytest.raises(ValueError, match="could not load"):
        C.dequantized(C.content_key("m", [f]), gguf_path=f)
    assert sorted(p.name for p in C.cache_root().iterdir()) == [C.INDEX]  # only the hash index


def test_one_gguf_parse_hands_out_one_reader_per_file_and_restores_gguf(tmp_path):
    """Inside one_gguf_parse, every gguf.GGUFReader(path) of a file (transformers makes three, the completeness
    check one more) is the same reader, parsed once; it reads what a fresh reader reads; outside, gguf is as it was."""
    import gguf
    import numpy as np
    path = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    original, parses = gguf.GGUFReader, []

    class Counting(original):
        def __init__(self, *a, **k):
            parses.append(a)
            super().__init__(*a, **k)

    gguf.GGUFReader = Counting
    try:
        with C.one_gguf_parse():
            a, b = gguf.GGUFReader(str(path)), gguf.GGUFReader(path)
            assert a is b and len(parses) == 1
            assert C.gguf_architecture(path) == "llama" and len(parses) == 1
        assert gguf.GGUFReader is Counting
    finally:
        gguf.GGUFReader = original
    fresh = original(str(path))
    np.testing.assert_array_equal(a.tensors[0].data, fresh.tensors[0].data)
    assert a.tensors[0].name == fresh.tensors[0].name and set(a.fields) == set(fresh.fields)


def test_the_shared_reader_reads_a_vocabulary_as_written_through_plain_arrays(tmp_path):
    """The one parse reads through a plain ndarray view of the file's map (plain_reader): every field, a 3,000-token
    vocabulary with its scores among them, holds what the writer wrote and what gguf's own reader reads, and the
    fields' parts are plain ndarrays, not np.memmap slices (what made a 262k-token vocabulary slow)."""
    import gguf
    import numpy as np
    tokens = [f"tok{i}·é" for i in range(3000)]
    scores = [float(np.float32(-i / 7)) for i in range(3000)]
    path = tmp_path / "v.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("vocab")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_context_length(128)
    w.add_tensor("token_embd.weight", np.arange(24, dtype=np.float32).reshape(3, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with C.one_gguf_parse():
        r = gguf.GGUFReader(str(path))
    fresh = gguf.GGUFReader(str(path))
    assert type(r) is not type(fresh) and not isinstance(r.data, np.memmap)
    assert r.fields["tokenizer.ggml.tokens"].contents() == tokens
    assert r.fields["tokenizer.ggml.scores"].contents() == scores
    assert r.fields["llama.context_length"].contents() == 128
    assert list(r.fields) == list(fresh.fields)
    for k, f in r.fields.items():
        assert f.contents() == fresh.fields[k].contents() and f.types == fresh.fields[k].types and f.data == fresh.fields[k].data
        assert not any(isinstance(p, np.memmap) for p in f.parts)
    np.testing.assert_array_equal(r.tensors[0].data, np.arange(24, dtype=np.float32).reshape(3, 8))


def test_a_killed_build_leaves_a_temp_folder_the_next_build_removes(root):
    """A first build killed with SIGKILL (a forked child process; the kernel drops its flock) leaves its temp folder;
    the next build of the same entry removes it. Kept: a build still running (its lock held), a lock-less folder
    touched recently, another entry's temp folder, and anything not named like a temp folder."""
    import signal
    import time
    from pathlib import Path
    tmp, built = root
    f = tmp / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(100))
    key = C.content_key("m", [f])
    dest = C.cache_root() / key
    with C.building(dest) as running:                       # a concurrent build of the same entry, still running
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: starts a build of the entry, says where, and waits to be killed
            try:
                with C.building(dest) as t:
                    (t / "joined.gguf").write_bytes(b"x" * 1000)
                    os.write(w, str(t).encode())
                    time.sleep(600)
            finally:
                os._exit(1)
        os.close(w)
        try:
            killed = Path(os.read(r, 4096).decode())
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
        assert killed.is_dir() and killed.name.startswith(f".{key}.") and (killed / "joined.gguf").is_file()
        old_unlocked = C.temp_dir(dest)                     # from before locks: no lock file, untouched for 2 h
        os.utime(old_unlocked, (time.time() - 7200,) * 2)
        fresh_unlocked = C.temp_dir(dest)
        other = C.temp_dir(C.cache_root() / "other-entry")  # another entry's (lock-less, old): not this key's
        os.utime(other, (time.time() - 7200,) * 2)
        lookalike = C.cache_root() / f".{key}.notatemp"
        lookalike.mkdir()
        assert sorted(C.remove_abandoned(dest)) == sorted([killed, old_unlocked])
        assert running.is_dir() and fresh_unlocked.is_dir() and not killed.exists()
    d = C.dequantized(key, gguf_path=f)
    assert (d / "source.bin").read_bytes() == f.read_bytes() and not (d / C.LOCK).exists() and len(built) == 1
    left = sorted(p.name for p in C.cache_root().iterdir())
    assert left == sorted([C.INDEX, key, fresh_unlocked.name, other.name, lookalike.name])


def _safetensors_build(monkeypatch, ref):
    """A stand-in for transformers' dequantization that writes real safetensors (tensor `ref`)."""
    from safetensors.torch import save_file

    def fake(src, out):
        save_file({"w": ref}, str(out / "model.safetensors"))
        (out / "config.json").write_text('{"model_type": "llama"}')

    monkeypatch.setattr(C, "_dequantize", fake)


@pytest.mark.parametrize("damage", ["overwrite", "truncate", "remove", "legacy-truncate"])
def test_a_damaged_entry_is_rebuilt_never_read(root, monkeypatch, damage):
    """Reference: the tensor the build wrote. An entry whose weights changed after it was built (bytes overwritten
    in place, truncated, removed; or an entry built before manifests, then truncated) is rebuilt with a warning, and
    what loads is the original tensor, not the damaged bytes."""
    import torch
    from safetensors.torch import load_file
    tmp, _ = root
    ref = torch.arange(4096, dtype=torch.float32)
    _safetensors_build(monkeypatch, ref)
    f = tmp / "m.gguf"
    f.write_bytes(b"GGUF")
    d = C.dequantized(C.content_key("m", [f]), gguf_path=f)
    assert torch.equal(load_file(str(d / "model.safetensors"))["w"], ref) and (d / C.MANIFEST).is_file()
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    if damage == "overwrite":  # same size: only the hashes tell
        data[-64:] = bytes(64)
        w.write_bytes(bytes(data))
    elif damage == "remove":
        w.unlink()
    else:
        if damage == "legacy-truncate":
            (d / C.MANIFEST).unlink()
        w.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.warns(UserWarning, match="damaged"):
        d2 = C.dequantized(C.content_key("m", [f]), gguf_path=f)
    assert d2 == d and torch.equal(load_file(str(d2 / "model.safetensors"))["w"], ref)
    assert sorted(p.name for p in C.cache_root().iterdir()) == sorted([C.INDEX, d.name])  # nothing left aside


def test_an_intact_entry_is_not_hashed_again(root, monkeypatch):
    """Loading an unchanged entry reads its hashes from the index: no file is hashed, nothing is rebuilt."""
    import torch
    tmp, built = root
    _safetensors_build(monkeypatch, torch.ones(8))
    f = tmp / "m.gguf"
    f.write_bytes(b"GGUF")
    key = C.content_key("m", [f])
    d = C.dequantized(key, gguf_path=f)
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(C.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(C, "_dequantize", lambda src, out: calls.append("built"))
    assert C.dequantized(key, gguf_path=f) == d and calls == []


def test_a_gguf_with_tensors_transformers_cannot_find_is_refused(tmp_path, monkeypatch):
    """transformers' GGUF loader fills the tensors it finds no weights for at random and reports them as missing;
    the dequantization refuses that model (it would be cached as the GGUF's weights) and leaves no entry."""
    import transformers
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(C, "gguf_architecture", lambda p: "llama")
    cfg = transformers.LlamaConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16)

    class Tok:
        @staticmethod
        def from_pretrained(*a, **k):
            return Tok()

        def save_pretrained(self, out):
            pass

    class Loader:  # what transformers returns for a GGUF whose layer-0 q_proj it could not map
        @staticmethod
        def from_pretrained(*a, output_loading_info=False, **k):
            m = transformers.LlamaForCausalLM(cfg)
            info = {"missing_keys": {"model.layers.0.self_attn.q_proj.weight"}, "unexpected_keys": set(),
                    "mismatched_keys": set(), "error_msgs": []}
            return (m, info) if output_loading_info else m

    monkeypatch.setattr(transformers, "AutoTokenizer", Tok)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", Loader)
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"no weights for 1 tensor\(s\) .*q_proj.*at random"):
        C.dequantized(C.content_key("m", [f]), gguf_path=f)
    assert not any(p.is_dir() for p in C.cache_root().iterdir())


@pytest.mark.parametrize("damage,state", [
    (None, "ready"),
    ("overwrite", "unverified (model.safetensors was modified on disk since it was hashed): hashed when loaded, "
                  "rebuilt if it changed"),
    ("truncate", "damaged (model.safetensors changed since the entry was built): rebuilt when loaded"),
    ("remove", "damaged (model.safetensors is missing): rebuilt when loaded"),
    ("legacy-truncate", "damaged (model.safetensors is unreadable"),
])
def test_the_listing_says_a_damaged_entry_is_not_cached(root, monkeypatch, damage, state):
    """available_models listed an entry whose files no longer match its manifest as cached (it only looked for the
    READY file), though loading rebuilds it. Now its `cache` column says what is wrong and `cached` is False; the
    listing hashes nothing (a same-size overwrite is 'unverified': only a hash tells) and leaves the entry alone."""
    import torch

    import interp.models as M
    tmp, _ = root
    _safetensors_build(monkeypatch, torch.arange(4096, dtype=torch.float32))
    f = tmp / "m.gguf"
    f.write_bytes(b"GGUF")
    d = C.dequantized(C.content_key("m", [f]), gguf_path=f)
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    if damage == "overwrite":
        data[-64:] = bytes(64)
        w.write_bytes(bytes(data))
    elif damage == "remove":
        w.unlink()
    elif damage:
        if damage == "legacy-truncate":
            (d / C.MANIFEST).unlink()
        w.write_bytes(bytes(data[: len(data) // 2]))
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(C.hashlib, "sha256", lambda *a: hashed.append(1) or real(*a))
    assert C.entry_state(d).startswith(state) and hashed == []
    monkeypatch.setattr(M, "cache_key", lambda e, compute=True: d.name)  # every GGUF model's entry is `d`
    df = M.available_models().set_index("name")
    rows = df[df.cache.notna()]
    if rows.empty:
        pytest.skip("no GGUF-packaged model is installed")
    assert all(s.startswith(state) for s in rows.cache) and (rows.cached == (damage is None)).all()
    assert hashed == [] and d.is_dir() and (d / C.READY).is_file()
    from interp.cli import main  # `interp models` says it too, in its `cached` column
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["models"]) == 0
    word = {"ready": "yes", "unverified": "unverified", "damaged": "damaged"}[state.split(" ", 1)[0]]
    cols = {ln.split()[0]: ln.split()[5] for ln in buf.getvalue().splitlines()[1:] if ln.split()[:1] and
            ln.split()[0] in set(rows.index)}
    assert cols and set(cols.values()) == {word}, buf.getvalue()
