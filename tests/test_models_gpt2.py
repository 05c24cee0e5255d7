"""GPT-2 and LN-free GPT-2 through interp.load_model, on tiny random checkpoints written here.

The LN-free copy is made the way the schaeff/gpt2-*_LNFree* checkpoints are: LayerNorm eps = 1e12 and norm
weights × 1e6 (the stream is centred first, so the huge-eps LayerNorm is the identity up to float error).
"""
import pytest
import torch
import torch.nn.functional as F

import interp
from interp.models import MissingWeights

from gpt2_fixtures import TEXT, write_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel
    root = tmp_path_factory.mktemp("gpt2")
    vanilla, free = root / "tiny-gpt2", root / "tiny-gpt2_LNFree"
    vocab = write_tokenizer(vanilla)
    write_tokenizer(free)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=vocab)
    m = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # random LN gains / biases so the vanilla test sees a real LayerNorm
        for ln in [b.ln_1 for b in m.transformer.h] + [b.ln_2 for b in m.transformer.h] + [m.transformer.ln_f]:
            ln.weight.uniform_(0.5, 1.5), ln.bias.normal_(0, 0.1)
    m.save_pretrained(vanilla)
    # LN-free copy: centre everything that writes to the stream, unit LN params, then eps=1e12 and weights×1e6
    with torch.no_grad():
        t = m.transformer
        for w in (t.wte.weight, t.wpe.weight):
            w -= w.mean(-1, keepdim=True)
        for blk in t.h:
            for proj in (blk.attn.c_proj, blk.mlp.c_proj):  # Conv1D: weight [in, out]
                proj.weight -= proj.weight.mean(-1, keepdim=True)
                proj.bias -= proj.bias.mean()
        for ln in [b.ln_1 for b in t.h] + [b.ln_2 for b in t.h] + [t.ln_f]:
            ln.weight.fill_(1e6), ln.bias.zero_()
    m.config.layer_norm_epsilon = 1e12
    m.save_pretrained(free)
    return vanilla, free


@pytest.fixture(scope="module")
def tokens(ckpts):
    from interp.tokenize import batch_encode
    tok = interp.load_model(ckpts[0]).tokenizer
    return batch_encode(tok, [TEXT, "And God said"])


def hf_logits(d, tokens, mask):
    from transformers import GPT2LMHeadModel
    with torch.no_grad():
        return GPT2LMHeadModel.from_pretrained(d).eval()(input_ids=tokens, attention_mask=mask.long()).logits


def test_vanilla_equals_transformers(ckpts, tokens):
    model = interp.load_model(ckpts[0])
    t, mask = tokens
    c = model.card
    assert (c.family, c.placement, c.norm_kind, c.n_layers, c.d_model) == ("gpt2", "pre", "layernorm", 2, 32)
    assert model.tokenizer.add_bos and t[0, 0] == model.tokenizer.bos_id
    cfg = model.cfg  # zoo-style fields
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.n_ctx, cfg.final_norm, cfg.strategy) == \
        (2, 32, 4, 128, 64, True, "pre-ln")
    with torch.no_grad():
        logits, cache = model.run_with_cache(t, mask)
    assert torch.allclose(logits[mask], hf_logits(ckpts[0], t, mask)[mask], atol=1e-4)
    ln = model.hf.transformer.h[1].ln_2
    x = cache["blocks.1.ln2.hook_in"]
    assert torch.allclose(cache["blocks.1.ln2.hook_scale"], (x.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt())
    assert torch.allclose(cache["blocks.1.ln2.hook_normalized"],
                          F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps), atol=1e-5)
    assert torch.allclose(model.apply_final_norm(cache[model.sites.final_resid]) @ model.W_U, logits, atol=1e-4)


def test_ln_free_loads_with_identity_norms(ckpts, tokens):
    model = interp.load_model(ckpts[1])
    t, mask = tokens
    c = model.card
    assert (c.placement, c.norm_kind) == ("none", "none") and "ln_free" in c.extra
    assert model.cfg.final_norm is False and model.cfg.strategy == c.strategy == "no-norm"
    assert not any(n.endswith("hook_scale") for n in model.hook_dict)
    assert all(isinstance(b.ln_1, torch.nn.Identity) for b in model.hf.transformer.h)
    assert model.sites.layers[0].norm_scales == {} and model.sites.final_norm_scale is None
    with torch.no_grad():
        logits, cache = model.run_with_cache(t, mask)
    # the checkpoint's own huge-eps LayerNorm computes the same function (the stream is centred)
    assert torch.allclose(logits[mask], hf_logits(ckpts[1], t, mask)[mask], atol=1e-3)
    pre, post = cache["blocks.0.hook_resid_pre"], cache["blocks.0.hook_resid_post"]
    assert torch.allclose(post, pre + cache["blocks.0.hook_attn_out"] + cache["blocks.0.hook_mlp_out"], atol=1e-5)
    assert torch.equal(cache["blocks.1.ln1.hook_normalized"], cache["blocks.1.ln1.hook_in"])
    assert torch.equal(model.apply_final_norm(post), post)


def test_decompose_resid_batch_without_mask(ckpts):
    """TransformerLens' decompose_resid on two rows with no mask (the README's recipe): hook_pos_embed is [b, t, d],
    and the components sum, row by row, to what transformers' own GPT-2 (same folder) feeds its final LayerNorm."""
    from transformers import GPT2LMHeadModel
    model = interp.load_model(ckpts[0])
    torch.manual_seed(0)
    toks = torch.randint(1, model.hf.config.vocab_size, (2, 7))
    with torch.no_grad():
        logits, cache = model.run_with_cache(toks)
    assert cache["hook_pos_embed"].shape == cache["hook_embed"].shape == (2, 7, 32)
    stack = cache.decompose_resid(pos_slice=-1)  # [components, b, d]
    ref = GPT2LMHeadModel.from_pretrained(ckpts[0]).eval()
    seen = []
    ref.transformer.ln_f.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        ref_logits = ref(input_ids=toks).logits
    assert stack.shape[1] == 2 and torch.allclose(stack.sum(0), seen[0][:, -1], atol=1e-5)
    assert torch.equal(logits, ref_logits)  # observing hook_pos_embed changes nothing


def _fake_hf_cache(root, repo_id, src, files):
    import shutil
    base = root / ("models--" + repo_id.replace("/", "--"))
    snap = base / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0123abc")
    for f in files:
        shutil.copy(src / f, snap / f)


def test_registry_names_from_hf_cache(ckpts, tokens, tmp_path, monkeypatch):
    """schaeff/... names resolve through the HF cache; a checkpoint without a tokenizer borrows gpt2's."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeights, match="config.json.*model.safetensors"):
        interp.load_model("schaeff/gpt2-small_LNFree300")
    _fake_hf_cache(tmp_path, "schaeff/gpt2-small_LNFree300", ckpts[1], ["config.json", "model.safetensors"])
    _fake_hf_cache(tmp_path, "gpt2", ckpts[0], ["tokenizer.json", "tokenizer_config.json"])
    df = interp.available_models().set_index("name")
    assert df.loc["schaeff/gpt2-small_LNFree300", "present"] and not df.loc["gpt2", "present"]
    assert df.loc["schaeff/gpt2-small_LNFree300", "placement"] == "none"
    model = interp.load_model("gpt2-small_LNFree300")
    assert model.card.placement == "none" and model.card.name == "schaeff/gpt2-small_LNFree300"
    with pytest.raises(MissingWeights, match="gpt2"):
        interp.load_model("gpt2")
