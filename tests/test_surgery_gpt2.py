"""GPT-2 → zoo conversion and LN removal on GPT-2, on a tiny random GPT-2 checkpoint written here.

Reference: transformers' own GPT2LMHeadModel on the same checkpoint (tanh GELU, Conv1D weights, tied head).
"""
import pytest
import torch

import interp
from interp import zoo
from interp.norms import Norm
from interp.surgery import from_gpt2, remove_layernorm

from gpt2_fixtures import TEXT, write_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel
    d = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    vocab = write_tokenizer(d)
    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=vocab))
    with torch.no_grad():  # random LN gains / biases and larger weights, so LN and the GELU shape really matter
        for ln in [b.ln_1 for b in m.transformer.h] + [b.ln_2 for b in m.transformer.h] + [m.transformer.ln_f]:
            ln.weight.uniform_(0.5, 1.5), ln.bias.normal_(0, 0.1)
        for blk in m.transformer.h:
            blk.mlp.c_fc.weight.normal_(0, 0.3), blk.mlp.c_fc.bias.normal_(0, 0.5)
    m.save_pretrained(d)
    return d


def hf_logits(d, tokens):
    from transformers import GPT2LMHeadModel
    with torch.no_grad():
        return GPT2LMHeadModel.from_pretrained(d).eval()(input_ids=tokens).logits


def test_converted_logits_equal_transformers(ckpt):
    model = from_gpt2(ckpt)
    assert model.cfg.act == "gelu_tanh" and model.cfg.tie_embeddings and model.unembed.weight is model.embed.weight
    tok = model.tokenizer  # carried over: same ids as the HF tokenizer, <|endoftext|> as BOS
    from transformers import AutoTokenizer
    hf_tok = AutoTokenizer.from_pretrained(ckpt)
    assert tok.encode(TEXT) == hf_tok(TEXT, add_special_tokens=False)["input_ids"]
    assert tok.bos_id == hf_tok.eos_token_id and tok.add_bos
    tokens = torch.tensor([tok.bos_id] + tok.encode(TEXT)).unsqueeze(0)
    tokens = torch.cat([tokens, torch.randint(0, model.cfg.d_vocab, tokens.shape)])
    ref = hf_logits(ckpt, tokens)
    with torch.no_grad():
        got = model(tokens)
        assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()
        exact = zoo.ZooModel(model.cfg.__class__(**{**model.cfg.to_dict(), "act": "gelu"}))
        exact.load_state_dict(model.state_dict())
        assert not torch.allclose(exact(tokens), ref, atol=1e-4)  # the activation choice is really tested
    same = from_gpt2(interp.load_model(ckpt))  # the hooked model gives the same zoo model
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), model.state_dict().values()))


def test_remove_layernorm_on_gpt2_leaves_no_norm_and_saves(ckpt, tmp_path):
    model = from_gpt2(ckpt)
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(1, model.cfg.d_vocab, (4000,), generator=g)
    eval_tokens = torch.randint(1, model.cfg.d_vocab, (4, 33), generator=g)
    r = remove_layernorm(model, stream, eval_tokens, steps_per_stage=2, batch_size=2, calib_batches=1)
    assert list(r.stages["stage"]) == ["ln2", "ln1_qk", "ln1_v", "ln_final", "pos0"]
    assert list(r.stages["norms"]) == [2, 2, 2, 1, 0]
    assert all(map(torch.isfinite, map(torch.tensor, r.ce.values())))
    free = r.model
    assert (free.cfg.placement, free.cfg.norm, free.cfg.final_norm, free.cfg.act) == ("none", "none", False,
                                                                                      "gelu_tanh")
    assert not any(isinstance(m, Norm) for m in free.modules())
    assert not any("ln" in n for n in free.hook_dict)  # no norm hook points: nothing divides by a statistic
    x = eval_tokens[:2, :-1]
    with torch.no_grad():
        logits, cache = free.run_with_cache(x)
    for l in range(free.cfg.n_layers):  # the stream is a plain sum of the sublayer writes ...
        pre, mid, post = (cache[f"blocks.{l}.hook_resid_{s}"] for s in ("pre", "mid", "post"))
        assert torch.allclose(mid, pre + cache[f"blocks.{l}.hook_attn_out"], atol=1e-5)
        assert torch.allclose(post, mid + cache[f"blocks.{l}.hook_mlp_out"], atol=1e-5)
    final = cache[f"blocks.{free.cfg.n_layers - 1}.hook_resid_post"]  # ... read by the unembedding directly
    assert torch.allclose(logits, final @ free.W_U + free.b_U, atol=1e-4)
    # the final model is linear in its last stream: doubling it doubles the logits minus the bias
    assert torch.allclose(free.unembed(2 * final) - free.b_U, 2 * (logits - free.b_U), atol=1e-4)
    out = free.save(tmp_path / "gpt2-lnfree")
    back = zoo.load(out)
    assert back.tokenizer is not None and back.tokenizer.bos_id == model.tokenizer.bos_id
    assert back.tokenizer.encode(TEXT) == model.tokenizer.encode(TEXT)
    with torch.no_grad():
        assert torch.equal(back(x), free(x))


def test_bad_inputs_raise_clear_errors(ckpt):
    with pytest.raises(ValueError, match="GPT-2"):
        from_gpt2(zoo.build("pre-ln", n_layers=1, d_model=16, d_mlp=32, d_vocab=50, n_ctx=8))
    with pytest.raises(ValueError, match="already LN-free"):
        from interp.models.gpt2 import strip_layernorms
        m = interp.load_model(ckpt)
        strip_layernorms(m.hf)
        from_gpt2(m)


def test_an_ln_free_checkpoint_loaded_straight_into_transformers_is_refused(ckpt):
    """The LN-free GPT-2 checkpoints switch LayerNorm off with eps = 1e12 and weights x 1e6 (their cards; NOTES.md).
    Loaded with transformers itself (not interp.load_model, which strips them), from_gpt2 converted that as a
    vanilla Pre-LN GPT-2, so LN removal 'removed' a LayerNorm that computes x - mean(x) + b already."""
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(ckpt, layer_norm_epsilon=1e12)
    with torch.no_grad():
        for ln in [b.ln_1 for b in hf.transformer.h] + [b.ln_2 for b in hf.transformer.h] + [hf.transformer.ln_f]:
            ln.weight.mul_(1e6)
    x = torch.randn(3, 32) * 5
    ln = hf.transformer.h[0].ln_1
    with torch.no_grad():  # the reference: such a LayerNorm is the centering plus its bias, no scale
        torch.testing.assert_close(ln(x), (x - x.mean(-1, keepdim=True)) * ln.weight / 1e6 + ln.bias,
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"already LN-free \(LayerNorm eps 1e\+12"):
        from_gpt2(hf)


def test_cli_remove_ln_takes_a_gpt2_checkpoint(ckpt, tmp_path):
    import json
    from interp.cli import main
    out = tmp_path / "out"
    assert main(["remove-ln", str(ckpt), "--out", str(out), "--steps-per-stage", "1", "--batch-size", "2",
                 "--seq-len", "16", "--eval-seqs", "2"]) == 0
    def no_nan(c):
        raise AssertionError(f"removal.json holds {c}, which is not JSON")
    rep = json.loads((out / "removal.json").read_text(), parse_constant=no_nan)
    assert set(rep["ce"]) >= {"before", "vanilla", "lnfree"} and len(rep["stages"]) == 5
    assert rep["stages"][-1]["sigma_mean"] is None  # the pos0 stage freezes no norm: no σ (was NaN)
    free = zoo.load(out)
    assert free.cfg.placement == "none" and free.cfg.act == "gelu_tanh" and free.tokenizer is not None
    # the CE "before" is the random-init GPT-2's on GPT-2-tokenized corpus windows: about uniform, ln(vocab)
    assert abs(rep["ce"]["before"] - torch.tensor(float(free.cfg.d_vocab)).log().item()) < 0.3


def test_cli_remove_ln_writes_checkpoint_and_report_together(ckpt, tmp_path, monkeypatch):
    # a failure while writing removal.json used to leave the LN-free checkpoint installed without it
    import interp.outputs
    from interp.cli import main

    real = interp.outputs.atomic_write_bytes

    def fail(path, data):  # only removal.json fails; the checkpoint's own files are written
        if str(path).endswith("removal.json"):
            raise OSError("disk full")
        return real(path, data)
    monkeypatch.setattr(interp.outputs, "atomic_write_bytes", fail)
    out = tmp_path / "out"
    try:
        rc = main(["remove-ln", str(ckpt), "--out", str(out), "--steps-per-stage", "1", "--batch-size", "2",
                   "--seq-len", "16", "--eval-seqs", "1", "--control", "single"])
    except OSError:
        rc = 1
    assert rc != 0
    assert not out.exists() and list(tmp_path.iterdir()) == []
