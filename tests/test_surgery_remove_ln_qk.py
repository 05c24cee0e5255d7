"""LN removal on Pre-LN zoo models with QK-norm and rotary positions (kept as they are: only ln1 / ln2 / ln_final
go), and its refusal of masked-diffusion models. Reference: the FakeLN model's own logits before folding, float64;
the split stage's exactness against the unsplit model is tests/test_surgery_split_attention.py."""
import pytest
import torch

import interp
from interp.norms import FakeLN, LayerNorm
from interp.surgery import STAGES, fold_fakeln, remove_layernorm, remove_stage
from interp.surgery.remove_ln import check_removable

G = torch.Generator().manual_seed(0)
STREAM = torch.randint(0, 40, (2000,), generator=G)
EVAL = torch.randint(0, 40, (3, 12), generator=G)
CALIB = [torch.randint(0, 40, (3, 12), generator=G)]
TOK = torch.randint(0, 40, (3, 12), generator=G)
SMALL = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, n_ctx=12, d_vocab=40, init_std=0.3)
CASES = {"qk_norm": {"qk_norm": True}, "rotary": {"positions": "rotary", "attn_local_init": 1.0},
         "rotary+qk_norm": {"positions": "rotary", "qk_norm": True}}


def build(name="pre-ln", **extra):
    m = interp.zoo.build(name, **SMALL, **extra).double().eval()
    with torch.no_grad():  # QK-norm gains far from 1, so losing or resetting them shows
        for n, p in m.named_parameters():
            if n.endswith(("q_norm.w", "k_norm.w")):
                p.copy_(2 + torch.randn_like(p))
    return m


def remove_all(m):
    for st in STAGES:
        remove_stage(m, st, CALIB)
    return m


@pytest.mark.parametrize("case", list(CASES))
def test_fold_keeps_qk_norm_and_rotary_exactly(case):
    m = build(**CASES[case])
    gains = {n: p.detach().clone() for n, p in m.named_parameters() if n.endswith(("q_norm.w", "k_norm.w"))}
    remove_all(m)
    with torch.no_grad():
        want = m(TOK)
        free = fold_fakeln(m)
        assert torch.allclose(free(TOK), want, rtol=1e-9, atol=1e-10)
    assert free.cfg.placement == "none" and free.cfg.qk_norm == m.cfg.qk_norm
    assert free.cfg.positions == m.cfg.positions
    assert not any(isinstance(x, (LayerNorm, FakeLN)) for x in free.modules())
    for n, g in gains.items():  # QK-norm kept as it was
        assert torch.equal(free.get_parameter(n), g)


@pytest.mark.parametrize("case", ["qk_norm", "rotary"])
def test_remove_layernorm_runs_to_the_end(case):
    r = remove_layernorm(build(**CASES[case]), STREAM, EVAL, steps_per_stage=0, calib_batches=1, batch_size=3,
                         control=None)
    assert r.model.cfg.placement == "none" and r.model.cfg.qk_norm == (case == "qk_norm")
    assert r.ce["lnfree"] == pytest.approx(r.ce["lnfree_fakeln"], abs=1e-6)


def test_fold_carries_mask_embed_and_t_embedder():
    m = remove_all(build("mdlm-ln"))
    tok = TOK.clone()
    tok[:, 1::2] = m.cfg.mask_id
    cond = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    with torch.no_grad():
        want = m(tok, cond=cond)
        assert torch.allclose(fold_fakeln(m)(tok, cond=cond), want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["mdlm-ln", "mdlm-uncond"])
def test_refuses_masked_diffusion_before_finetuning(name):
    m = build(name)
    with pytest.raises(ValueError, match="masked-diffusion"):
        check_removable(m)
    calls = []
    with pytest.raises(ValueError, match="masked-diffusion"):
        remove_layernorm(m, STREAM, EVAL, steps_per_stage=1, finetune=lambda *a: calls.append(a))
    assert calls == []
