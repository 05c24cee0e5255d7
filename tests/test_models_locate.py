"""Local transformers checkpoints whose weights are sharded (an index + shard files, what save_pretrained writes
above its shard size): interp loads what transformers loads from the same folder, and a missing shard is one
error naming it. Pickle shards go through torch.load(weights_only=True) only: code inside is refused, never run."""
import json
import os
import shutil

import pytest
import torch

import interp
from interp.models import MissingWeights

from gpt2_fixtures import write_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A tiny random Llama saved in three safetensors shards (+ index), with a tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM
    d = tmp_path_factory.mktemp("ckpt") / "tiny-llama-sharded"
    vocab = write_tokenizer(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(d, max_shard_size="40KB")
    assert not (d / "model.safetensors").exists() and (d / "model.safetensors.index.json").is_file()
    assert len(list(d.glob("model-*-of-*.safetensors"))) >= 2
    return d


def transformers_logits(d, tokens):
    from transformers import AutoModelForCausalLM
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(d).eval()(input_ids=tokens).logits


def test_sharded_safetensors_loads_as_transformers_does(sharded):
    model = interp.load_model(sharded)
    tokens = torch.randint(3, model.hf.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens)
    assert model.card.family == "llama" and torch.equal(ours, transformers_logits(sharded, tokens))


def test_missing_or_unreadable_shard_index(sharded, tmp_path):
    d = tmp_path / "partial"
    shutil.copytree(sharded, d)
    shards = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"].values()
    gone = sorted(set(shards))[1]
    (d / gone).unlink()
    with pytest.raises(OSError):  # transformers cannot load it either
        transformers_logits(d, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(MissingWeights, match=f"incomplete checkpoint; missing: {gone} "
                                             r"\(a shard model.safetensors.index.json names\)"):
        interp.load_model(d)
    (d / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(MissingWeights, match="missing: a readable model.safetensors.index.json"):
        interp.load_model(d)


def _bin_shards(src, d, extra=None):
    """`src`'s tensors as two pickle shards + pytorch_model.bin.index.json (transformers 5 writes no pickles)."""
    from safetensors.torch import load_file
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("model*.safetensors*"))
    sd = {}
    for f in sorted(src.glob("model-*.safetensors")):
        sd.update(load_file(f))
    keys = sorted(sd)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, ks in halves.items():
        part = {k: sd[k] for k in ks}
        if extra and name.startswith("pytorch_model-00002"):
            part.update(extra)
        torch.save(part, d / name)
    wm = {k: n for n, ks in halves.items() for k in ks}
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return d


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['INTERP_TEST_FLAG']}",))


def test_sharded_pickle_loads_tensors_only(sharded, tmp_path, monkeypatch):
    d = _bin_shards(sharded, tmp_path / "bin")
    tokens = torch.randint(3, 200, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(interp.load_model(d)(tokens), transformers_logits(d, tokens))
    flag = tmp_path / "code-ran"
    monkeypatch.setenv("INTERP_TEST_FLAG", str(flag))
    evil = _bin_shards(sharded, tmp_path / "evil", extra={"x": _RunsCode()})
    with pytest.raises(ValueError, match="pickle weights hold more than tensors.*never run"):
        interp.load_model(evil)
    assert not flag.exists()
