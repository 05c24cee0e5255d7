"""SmolLM2-135M (Pre-RMSNorm Llama) through interp.load_model, checked against a plain transformers model."""
import pytest
import torch

import interp
from interp.models.cache import cache_root
from interp.models.registry import REGISTRY, cache_key
from interp.tokenize import batch_encode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return interp.load_model("smollm2-135m")


@pytest.fixture(scope="module")
def plain(model):
    """The same weights loaded by transformers alone, with no hooks anywhere."""
    from transformers import LlamaForCausalLM
    d = cache_root() / cache_key(REGISTRY["smollm2-135m"])
    return LlamaForCausalLM.from_pretrained(str(d), attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def batch(model):
    return batch_encode(model.tokenizer, ["The capital of France is", "Water boils at one hundred degrees"])


def test_paris_in_top5(model):
    tokens, mask = batch_encode(model.tokenizer, ["The capital of France is"])
    assert model.tokenizer.add_bos is False and tokens[0, 0] != model.tokenizer.bos_id
    with torch.no_grad():
        top = model(tokens, mask)[0, -1].topk(5).indices.tolist()
    assert " Paris" in [model.tokenizer.decode([i]) for i in top]


def test_logits_equal_plain_transformers(model, plain, batch):
    tokens, mask = batch
    with torch.no_grad():
        ours = model(tokens, mask)
        ref = plain(input_ids=tokens, attention_mask=mask.long()).logits
        _, cache = model.run_with_cache(tokens, mask)  # observed forward: same logits too
        observed = model.run_with_hooks(tokens, mask, fwd_hooks=[(lambda n: "hook_" in n, lambda x, hook: None)])
    assert torch.allclose(ours[mask], ref[mask], atol=1e-4, rtol=0)
    assert torch.allclose(observed[mask], ref[mask], atol=1e-4, rtol=0)
    # right padding: the padded row's real tokens match the same text run alone
    n = int(mask[0].sum())
    with torch.no_grad():
        alone = plain(input_ids=tokens[:1, :n]).logits
    assert torch.allclose(ours[0, :n], alone[0], atol=1e-4, rtol=0)


def test_hooks_shapes_and_site_map(model, batch):
    tokens, mask = batch
    b, t = tokens.shape
    d = model.card.d_model
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, mask)
    sites = model.sites
    assert sites.n_layers == model.card.n_layers == 30
    for name in sites.all_hook_names():
        assert name in model.hook_dict and name in cache, name
    for ls in sites.layers:
        assert cache[ls.resid_pre].shape == (b, t, d) and cache[ls.resid_post].shape == (b, t, d)
        for s in ls.norm_scales.values():
            assert cache[s].shape == (b, t, 1)
    assert cache["hook_embed"].shape == (b, t, d)


def test_hooks_carry_what_the_docs_say(model, batch):
    """Brute force from the cached stream: residual sums, RMS scales, final norm @ W_U = logits."""
    tokens, mask = batch
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, mask)
    hf = model.hf.model
    for l in (0, 13, 29):
        p = f"blocks.{l}"
        pre, attn, mlp = cache[f"{p}.hook_resid_pre"], cache[f"{p}.hook_attn_out"], cache[f"{p}.hook_mlp_out"]
        assert torch.allclose(cache[f"{p}.hook_resid_mid"], pre + attn, atol=1e-4)
        assert torch.allclose(cache[f"{p}.hook_resid_post"], pre + attn + mlp, atol=1e-4, rtol=1e-5)
        eps = hf.layers[l].input_layernorm.variance_epsilon
        assert torch.allclose(cache[f"{p}.ln1.hook_scale"], (pre.pow(2).mean(-1, keepdim=True) + eps).sqrt(),
                              rtol=1e-5)
        w = hf.layers[l].post_attention_layernorm.weight
        mid = cache[f"{p}.hook_resid_mid"]
        assert torch.allclose(cache[f"{p}.ln2.hook_normalized"], w * mid / cache[f"{p}.ln2.hook_scale"], atol=1e-4)
    final = cache[model.sites.final_resid]
    assert torch.allclose(model.apply_final_norm(final) @ model.W_U, logits, atol=1e-3)
    assert model.b_U is None


def test_hook_edits_write_back(model, batch):
    tokens, mask = batch
    v = torch.randn(model.card.d_model) * 5

    def add_v(x, hook):
        return x + v
    with torch.no_grad():
        base = model(tokens, mask)
        zeroed = model.run_with_hooks(tokens, mask, fwd_hooks=[("blocks.10.hook_resid_post", lambda x, hook: x * 0)])
        via_mid = model.run_with_hooks(tokens, mask, fwd_hooks=[("blocks.10.hook_resid_mid", add_v)])
        via_attn = model.run_with_hooks(tokens, mask, fwd_hooks=[("blocks.10.hook_attn_out", add_v)])
        halved = model.run_with_hooks(tokens, mask, fwd_hooks=[("ln_final.hook_scale", lambda s, hook: 2 * s)])
    assert (zeroed - base).abs().max() > 1.0
    assert (via_mid - base).abs().max() > 0.1
    assert torch.allclose(via_mid, via_attn, atol=1e-3)       # adding v to x + attn == adding v to attn
    assert torch.allclose(halved, base / 2, atol=1e-4)         # no unembedding bias: logits scale with 1/s
    with torch.no_grad():
        again = model(tokens, mask)
    assert torch.equal(again, base)                            # run_with_hooks removed its hooks
