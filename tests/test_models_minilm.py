"""all-MiniLM-L6-v2 (Post-LN BERT encoder) through interp.load_model, checked against transformers' BertModel."""
import pytest
import torch
import torch.nn.functional as F

import interp
from interp.tokenize import batch_encode

pytestmark = pytest.mark.slow

TEXTS = ["A man is playing a guitar.", "Someone is playing an instrument.",
         "The stock market fell sharply today.", "A person plays the guitar."]


@pytest.fixture(scope="module")
def model():
    return interp.load_model("minilm-l6")


@pytest.fixture(scope="module")
def run(model):
    tokens, mask = batch_encode(model.tokenizer, TEXTS)
    with torch.no_grad():
        out, cache = model.run_with_cache(tokens, mask)
    return tokens, mask, out, cache


def test_card(model):
    c = model.card
    assert (c.family, c.placement, c.norm_kind, c.objective, c.n_layers, c.d_model) == \
        ("bert", "post", "layernorm", "encoder", 6, 384)
    with pytest.raises(ValueError, match="encoder"):
        model.W_U


def test_last_residual_equals_bertmodel(model, run):
    from transformers import AutoTokenizer, BertModel
    tokens, mask, out, cache = run
    ref_tok = AutoTokenizer.from_pretrained(model.card.weight_source)
    enc = ref_tok(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(enc["input_ids"], tokens)  # [CLS] ... [SEP], padded right, as BERT is used
    ref = BertModel.from_pretrained(model.card.weight_source).eval()
    with torch.no_grad():
        h = ref(**enc).last_hidden_state
    m = mask
    assert torch.allclose(cache[model.sites.final_resid][m], h[m], atol=1e-4)
    assert torch.allclose(out[m], h[m], atol=1e-4)


def test_paraphrase_closer_than_unrelated(run):
    _, mask, out, _ = run
    emb = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    cos = F.cosine_similarity
    assert cos(emb[0], emb[3], dim=0) > cos(emb[0], emb[2], dim=0)
    assert cos(emb[0], emb[1], dim=0) > cos(emb[1], emb[2], dim=0)


def test_post_ln_sites(model, run):
    """Deltas are the sublayer outputs, norm inputs the un-normalized sums, resid_post the carried stream."""
    _, _, _, cache = run
    hf = model.hf.encoder.layer
    for l, ls in enumerate(model.sites.layers):
        assert ls.placement == "post"
        pre, attn = cache[ls.resid_pre], cache[ls.deltas["attn"]]
        s1 = cache[ls.norm_inputs["ln1"]]
        assert torch.allclose(s1, pre + attn, atol=1e-5)
        ln1 = hf[l].attention.output.LayerNorm
        mid = F.layer_norm(s1, ln1.normalized_shape, ln1.weight, ln1.bias, ln1.eps)
        assert torch.allclose(cache[f"blocks.{l}.hook_resid_mid"], mid, atol=1e-5)
        assert torch.allclose(cache[ls.norm_inputs["ln2"]], mid + cache[ls.deltas["mlp"]], atol=1e-5)
        sd = (s1.var(-1, unbiased=False, keepdim=True) + ln1.eps).sqrt()
        assert torch.allclose(cache[ls.norm_scales["ln1"]], sd, rtol=1e-5)
    assert model.sites.final_norm_input is None and torch.equal(model.apply_final_norm(pre), pre)


def test_backward_hooks_fire(model):
    """Gradient hooks (for gradient collectors) fire with the stream's shape."""
    from interp.tokenize import batch_encode
    tokens, mask = batch_encode(model.tokenizer, TEXTS[:2])
    grads = {}

    def keep(g, hook):
        grads[hook.name] = g.detach()
    out = model.run_with_hooks(tokens, mask, bwd_hooks=[("blocks.2.hook_resid_post", keep),
                                                        ("blocks.2.ln1.hook_scale", keep)])
    out[mask].pow(2).sum().backward()
    model.zero_grad(set_to_none=True)
    assert grads["blocks.2.hook_resid_post"].shape == (*tokens.shape, 384)
    assert grads["blocks.2.ln1.hook_scale"].shape == (*tokens.shape, 1)
    assert grads["blocks.2.hook_resid_post"].abs().sum() > 0


def test_hooks_context_manager(model, run):
    """model.hooks(...) attaches for the block only; an edit to the stream changes the output."""
    tokens, mask, out, _ = run
    seen = []
    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.1.hook_resid_mid", lambda x, hook: seen.append(x.shape)),
                                                 ("blocks.4.hook_resid_post", lambda x, hook: x.flip(-1))]):
        edited = model(tokens, mask)
    with torch.no_grad():
        again = model(tokens, mask)
    assert seen == [(*tokens.shape, 384)]
    assert (edited - out)[mask].abs().max() > 0.1 and torch.equal(again, out)
