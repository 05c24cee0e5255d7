"""Pre-LN -> Pre-RMSNorm -> Pre-CRMSNorm: the same logits in float64 (rtol 1e-9), checked against forward."""
import pytest
import torch

import interp
from interp.norms import CRMSNorm, LayerNorm, RMSNorm
from interp.surgery import to_crmsnorm, to_rmsnorm


@pytest.fixture(scope="module")
def pre_ln():
    m = interp.zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=4, d_mlp=64, d_vocab=70, n_ctx=10,
                         init_std=0.3).double().eval()
    with torch.no_grad():  # gains and biases far from (1, 0), so folding is really exercised
        for n, p in m.named_parameters():
            if n.endswith(".w"):
                p.copy_(1 + 0.4 * torch.randn_like(p))
            elif n.endswith(".b") or n.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
    return m


TOK = torch.randint(0, 70, (3, 10), generator=torch.Generator().manual_seed(0))


def test_rmsnorm_and_crmsnorm_logits_equal_pre_ln(pre_ln, tmp_path):
    with torch.no_grad():
        want = pre_ln(TOK)
        r, c = to_rmsnorm(pre_ln), to_crmsnorm(pre_ln)
        assert torch.allclose(r(TOK), want, rtol=1e-9, atol=1e-12)
        assert torch.allclose(c(TOK), want, rtol=1e-9, atol=1e-12)
    assert not any(isinstance(m, LayerNorm) for m in r.modules()) and any(isinstance(m, RMSNorm) for m in r.modules())
    assert any(isinstance(m, CRMSNorm) for m in c.modules())
    assert c.cfg.d_model == 31 and c.embed.weight.shape[1] == 31 and c.blocks[0].attn.d_head == 8
    # the Pre-RMSNorm stream is zero-mean at every depth (what makes LN and RMSNorm agree)
    _, cache = r.run_with_cache(TOK)
    assert cache["blocks.2.hook_resid_post"].mean(-1).abs().max() < 1e-12
    # the converted model is an ordinary zoo checkpoint
    c.save(tmp_path / "c")
    back = interp.zoo.load(tmp_path / "c", dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(back(TOK), want, rtol=1e-5, atol=1e-5)  # load() builds in float32 first
    assert pre_ln.ln_final.b.abs().sum() > 0  # input untouched


def test_conversion_refuses_other_models():
    for name in ("post-ln", "pre-rmsnorm", "peri-ln", "no-norm"):
        with pytest.raises(ValueError, match="Pre-LN zoo model"):
            to_rmsnorm(interp.zoo.build(name, n_layers=2, d_model=32, d_vocab=50, n_ctx=8))


def test_an_existing_unembedding_bias_is_kept():
    # b_U of a model built with unembed_bias=True was dropped by the fold (logits off by b_U)
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=40, n_ctx=10,
                         unembed_bias=True).double().eval()
    with torch.no_grad():
        m.unembed.bias.copy_(torch.randn(40, generator=torch.Generator().manual_seed(1)))
        tok = TOK % 40
        want = m(tok)
        for conv in (to_rmsnorm, to_crmsnorm):
            torch.testing.assert_close(conv(m)(tok), want, rtol=1e-9, atol=1e-12)


def test_the_cli_check_reads_the_mask_embedding_and_the_t_path(tmp_path, monkeypatch, capsys):
    """`interp convert` checked the converted model on random tokens at t = 0 only: on a masked-diffusion model a
    conversion with a wrong [MASK] embedding (or t path) passed the check and was written."""
    import interp.surgery
    from interp.cli import main
    m = interp.zoo.build("mdlm-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, d_vocab=70, n_ctx=10)
    assert m.cfg.objective == "mdlm" and m.cfg.conditioned
    m.save(tmp_path / "mdlm")
    real = interp.surgery.to_rmsnorm

    def wrong_mask(model):
        conv = real(model)
        with torch.no_grad():
            conv.mask_embed.add_(0.5)  # only masked positions read it
        return conv
    monkeypatch.setattr(interp.surgery, "to_rmsnorm", wrong_mask)
    assert main(["convert", str(tmp_path / "mdlm"), "--to", "rmsnorm", "--out", str(tmp_path / "bad")]) != 0
    assert "does not reproduce" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    monkeypatch.setattr(interp.surgery, "to_rmsnorm", real)
    assert main(["convert", str(tmp_path / "mdlm"), "--to", "rmsnorm", "--out", str(tmp_path / "ok")]) == 0
    assert "half of them [MASK], t = 0, 0.5 and 1" in capsys.readouterr().out


@pytest.mark.parametrize("stages,where", [(["ln2"], "blocks.0.ln2 is FakeLN"),
                                          (["ln2", "ln1_qk"], "blocks.0.ln1 is Identity")])
def test_a_model_in_the_middle_of_ln_removal_is_refused_in_one_line(stages, where):
    # a FakeLN's frozen divisor is not LayerNorm's: this failed with 'state does not fit the model' (unexpected
    # ln2.scale) and, after the ln1 split, with AttributeError: 'Identity' object has no attribute 'w'
    from interp.surgery import remove_stage
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=40, n_ctx=10).double().eval()
    for st in stages:
        remove_stage(m, st, [TOK % 40])
    for conv in (to_rmsnorm, to_crmsnorm):
        with pytest.raises(ValueError, match=f"{where} \\(a model in the middle of LN removal"):
            conv(m)
