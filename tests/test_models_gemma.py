"""Gemma-3-270M (Peri-LN, RMSNorm with 1 + w) through interp.load_model."""
import math

import pytest
import torch

import interp
from interp.tokenize import batch_encode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return interp.load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def run(model):
    tokens, mask = batch_encode(model.tokenizer, ["The capital of France is", "Water boils"])
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, mask)
    return tokens, mask, logits, cache


def test_paris_in_top5(model, run):
    tokens, mask, logits, _ = run
    tok = model.tokenizer
    assert tok.add_bos and tok.padding_side == "left" and tokens[0, 0] == tok.bos_id
    top = logits[0, -1].topk(5).indices.tolist()
    assert " Paris" in [tok.decode([i]) for i in top]


def test_left_padding_matches_unpadded(model, run):
    tokens, mask, logits, _ = run
    n = int(mask[1].sum())
    assert not mask[1, 0] and mask[1, -1]  # padded on the left
    with torch.no_grad():
        alone = model.hf(input_ids=tokens[1:, -n:]).logits
    assert torch.allclose(logits[1, -n:], alone[0], atol=1e-3, rtol=1e-4)


def test_card_and_sites(model, run):
    c = model.card
    assert (c.family, c.placement, c.norm_kind, c.n_layers, c.d_model) == ("gemma3", "peri", "rmsnorm", 18, 640)
    _, _, _, cache = run
    for name in model.sites.all_hook_names():
        assert name in cache, name
    ls = model.sites.layers[3]
    assert set(ls.norm_scales) == {"ln1", "ln1_post", "ln2", "ln2_post", "q_norm", "k_norm"}
    assert ls.sublayer_out == {"attn": "blocks.3.attn.hook_out", "mlp": "blocks.3.mlp.hook_out"}
    # QK-norm: one RMS scale per token and head, brute force from the query projection of ln1's output
    attn = model.hf.model.layers[3].self_attn
    q = attn.q_proj(cache["blocks.3.ln1.hook_normalized"])
    q = q.view(*q.shape[:2], -1, attn.head_dim)
    assert torch.allclose(cache["blocks.3.attn.q_norm.hook_in"], q, atol=1e-4)
    s = (q.pow(2).mean(-1, keepdim=True) + attn.q_norm.eps).sqrt()
    assert torch.allclose(cache["blocks.3.attn.q_norm.hook_scale"], s, rtol=1e-5)
    assert ls.norm_widths == {"q_norm": attn.q_proj.out_features, "k_norm": attn.k_proj.out_features}


def test_peri_ln_hooks_carry_what_the_docs_say(model, run):
    tokens, _, logits, cache = run
    d = model.card.d_model
    emb = model.hf.model.embed_tokens.weight[tokens] * math.sqrt(d)
    assert torch.allclose(cache["hook_embed"], emb, rtol=1e-3, atol=1e-4)  # includes the √d multiply
    for l in (0, 9, 17):
        p, layer = f"blocks.{l}", model.hf.model.layers[l]
        raw, added = cache[f"{p}.attn.hook_out"], cache[f"{p}.hook_attn_out"]
        assert torch.equal(cache[f"{p}.ln1_post.hook_in"], raw)
        s = (raw.pow(2).mean(-1, keepdim=True) + layer.post_attention_layernorm.eps).sqrt()
        assert torch.allclose(cache[f"{p}.ln1_post.hook_scale"], s, rtol=1e-5)
        expect = raw / s * (1 + layer.post_attention_layernorm.weight)
        assert torch.allclose(added, expect, atol=1e-3, rtol=1e-4)
        nh = model.blocks[l].ln1_post  # the affine form DLA uses: x / s * gain (+ bias)
        assert nh.bias is None and torch.allclose(raw / s * nh.gain, expect, atol=1e-3, rtol=1e-4)
        pre = cache[f"{p}.hook_resid_pre"]
        assert torch.allclose(cache[f"{p}.hook_resid_mid"], pre + added, rtol=1e-5, atol=1e-3)
        post = cache[f"{p}.hook_resid_post"]
        assert torch.allclose(post, pre + added + cache[f"{p}.hook_mlp_out"], rtol=1e-5, atol=1e-2)
    assert cache["blocks.17.hook_resid_post"].abs().max() > 1e3  # the residual grows large: keep fp32
    final = model.apply_final_norm(cache[model.sites.final_resid])
    assert torch.allclose(final @ model.W_U, logits, atol=1e-3, rtol=1e-4)
