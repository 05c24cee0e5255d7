"""Logit lens against a hand computation: LayerNorm recomputed on the intermediate stream, then W_U."""
import pytest
import torch

import interp
from interp.attribution import logit_lens


def test_lens_recomputes_the_norm_and_ends_at_the_model():
    m = interp.zoo.build("pre-ln", n_layers=3, d_model=32, d_vocab=60, n_ctx=8, init_std=0.3).double().eval()
    tok = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(1))
    nxt = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(2))
    df = logit_lens(m, tok, target=nxt)
    _, cache = m.run_with_cache(tok)
    x = cache["blocks.1.hook_resid_pre"]  # depth 1
    ref = torch.nn.functional.layer_norm(x, (32,), m.ln_final.w, m.ln_final.b, eps=1e-5) @ m.W_U
    lp = ref.log_softmax(-1)
    row = df[(df.layer == 1) & (df.batch == 1) & (df.pos == 3)].iloc[0]
    assert row.target_logprob == pytest.approx(float(lp[1, 3, nxt[1, 3]]), abs=1e-9)
    assert row.target_rank == int((ref[1, 3] > ref[1, 3, nxt[1, 3]]).sum())
    final = m(tok).log_softmax(-1)
    kl = float((final[0, 2].exp() * (final[0, 2] - lp[0, 2])).sum())
    assert df[(df.layer == 1) & (df.batch == 0) & (df.pos == 2)].kl_to_final.iloc[0] == pytest.approx(kl, abs=1e-9)
    last = df[df.layer == 3]
    assert last.kl_to_final.abs().max() < 1e-9
    # reusing the final scale (TL #1076) gives a different answer on early layers, the same at the end
    bug = logit_lens(m, tok, target=nxt, scale="final")
    assert (bug[bug.layer == 1].kl_to_final.values - df[df.layer == 1].kl_to_final.values).__abs__().max() > 1e-3
    assert bug[bug.layer == 3].kl_to_final.abs().max() < 1e-9


def test_bad_target():
    m = interp.zoo.build("no-norm", n_layers=2, d_model=32, d_vocab=60, n_ctx=8)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        logit_lens(m, torch.zeros(1, 4, dtype=torch.long), target=99)


def test_figures_carry_the_data():
    from interp.attribution import dla, dla_scatter, lens_figure
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, d_vocab=60, n_ctx=8, init_std=0.3).eval()
    tok = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(3))
    df = dla(m, tok, target=1)
    fig = dla_scatter(df)
    heads = next(t for t in fig.data if t.name == "head")
    assert len(heads.x) == 2 * 2 * 4 and list(heads.x) == list(df[df.kind == "head"].dla)
    lens = logit_lens(m, tok)
    f2 = lens_figure(lens)
    assert list(f2.data[0].y) == pytest.approx(list(lens.groupby("layer").kl_to_final.mean()))
    for bad in ("nope", "scale", "batch"):  # 'scale' (a text column) was offered as a metric and then crashed
        with pytest.raises(ValueError, match="unknown metric"):
            lens_figure(lens, bad)


def _tiny_hf(model_type: str, **extra):
    """A tiny random transformers model of one family, norm gains and biases randomized, wrapped by interp."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from interp.models.families import wrap
    kw = dict(n_embd=32, n_layer=2, n_head=4, n_positions=32) if model_type == "gpt2" else dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=60, **kw, **extra),
                                          attn_implementation="eager" if model_type == "gemma2" else "sdpa").double().eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name or "ln_" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return wrap(hf, name=f"tiny-{model_type}")


@pytest.mark.parametrize("model_type", ["gemma2", "gemma3_text"])  # Gemma-3's config may set the cap too
def test_lens_and_dla_apply_the_logit_softcap(model_type):
    from interp.attribution import dla
    m = _tiny_hf(model_type, final_logit_softcapping=0.5)
    tok = torch.randint(3, 60, (2, 6), generator=torch.Generator().manual_seed(4))
    logits = m(tok).detach()
    d = dla(m, tok, target=7)  # DLA attributes the raw logit z of logits = cap·tanh(z / cap)
    for j in range(2):
        assert 0.5 * torch.tanh(torch.tensor(d[d.batch == j].dla.sum()) / 0.5) == pytest.approx(float(logits[j, -1, 7]),
                                                                                               abs=1e-6)
    df = logit_lens(m, tok, target=7)
    assert df[df.layer == 2].kl_to_final.abs().max() < 1e-9  # the last stream read as the model reads it
    _, cache = m.run_with_cache(tok)
    ln = m.hf.model.norm
    ref = 0.5 * torch.tanh(ln(cache["blocks.1.hook_resid_pre"]) @ m.W_U / 0.5)
    row = df[(df.layer == 1) & (df.batch == 1) & (df.pos == 4)].iloc[0]
    assert row.target_logprob == pytest.approx(float(ref.log_softmax(-1)[1, 4, 7]), abs=1e-6)  # its norm runs in fp32


def test_lens_final_scale_on_a_transformers_layernorm():
    m = _tiny_hf("gpt2")
    tok = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(5))
    df = logit_lens(m, tok, target=9, scale="final")
    _, cache = m.run_with_cache(tok)
    ln, x = m.hf.transformer.ln_f, cache["blocks.1.hook_resid_pre"]
    s = (cache["blocks.1.hook_resid_post"].var(-1, keepdim=True, unbiased=False) + ln.eps).sqrt()
    ref = ((x - x.mean(-1, keepdim=True)) / s * ln.weight + ln.bias) @ m.W_U  # centred, the final layer's scale
    row = df[(df.layer == 1) & (df.batch == 0) & (df.pos == 5)].iloc[0]
    assert row.target_logprob == pytest.approx(float(ref.log_softmax(-1)[0, 5, 9]), abs=1e-6)
    assert df[df.layer == 2].kl_to_final.abs().max() < 1e-6


def test_lens_target_per_sequence_and_empty_input():
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, d_vocab=60, n_ctx=8, init_std=0.3).double().eval()
    tok = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(6))
    df = logit_lens(m, tok, target=[4, 9])
    assert df.target_logprob.tolist() == logit_lens(m, tok, target=torch.tensor([[4] * 6, [9] * 6])).target_logprob.tolist()
    with pytest.raises(ValueError, match="at least one position"):
        logit_lens(m, tok[:, :0])


def test_left_padded_batch_with_attention_mask():
    """Gemma-style left padding: with the mask, the lens of the padded sequence's real tokens is that of the sequence
    alone (a transformers model: positions count from the first real token)."""
    m = _tiny_hf("llama")
    short = torch.randint(3, 60, (5,), generator=torch.Generator().manual_seed(7))
    tokens = torch.stack([torch.randint(3, 60, (8,), generator=torch.Generator().manual_seed(8)),
                          torch.cat([torch.zeros(3, dtype=torch.long), short])])
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, :3] = False
    batch = logit_lens(m, tokens, target=4, attention_mask=mask)
    alone = logit_lens(m, short, target=4)
    got = batch[(batch.batch == 1) & (batch.pos >= 3)]
    assert got.target_logprob.values == pytest.approx(alone.target_logprob.values, abs=1e-6)
    assert got.kl_to_final.values == pytest.approx(alone.kl_to_final.values, abs=1e-6)
    from interp.attribution import dla
    d = dla(m, tokens, target=4, attention_mask=mask)
    assert d[d.batch == 1].dla.values == pytest.approx(dla(m, short, target=4).dla.values, abs=1e-6)


def test_figures_escape_names_and_say_what_they_draw():
    """plotly renders a subset of HTML in titles and legends: a model named 'a<i>b' must show as typed, not italic."""
    from interp.attribution import dla, dla_scatter, lens_figure
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=32, d_vocab=60, n_ctx=8, init_std=0.3).eval()
    m.name = "a<i>b</i>&c"
    tok = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(3))
    fig = dla_scatter(dla(m, tok, target=1))
    assert "a&lt;i&gt;b&lt;/i&gt;&amp;c" in fig.layout.title.text and "<i>" not in fig.layout.title.text
    f2 = lens_figure(logit_lens(m, tok))
    assert f2.data[0].name == "a&lt;i&gt;b&lt;/i&gt;&amp;c (recomputed)"
    assert "mean" in f2.layout.title.text and "KL" in f2.layout.yaxis.title.text


@pytest.mark.parametrize("name", ["powernorm", "unified-norm"])
def test_lens_leaves_a_training_batch_statistic_model_as_it_was(name):
    """In train mode the lens's own forward (not only the final norm it applies) updated every PowerNorm / Unified
    Norm's running statistics and step counter: reading a model changed it. The values are still the train-mode
    ones, equal to those of a copy."""
    import copy
    m = interp.zoo.build(name, n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8).double().train()
    tok = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(9))
    ref = copy.deepcopy(m)
    before = {k: v.clone() for k, v in m.named_buffers()}
    df = logit_lens(m, tok, target=3)
    assert all(torch.equal(v, before[k]) for k, v in m.named_buffers())
    assert df.target_logprob.tolist() == logit_lens(ref, tok, target=3).target_logprob.tolist()
    from interp.attribution import dla_sublayers
    with pytest.raises(ValueError, match="no per-token scale"):  # refused before its forward moves anything
        dla_sublayers(m, tok, target=3)
    assert all(torch.equal(v, before[k]) for k, v in m.named_buffers())
