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
    with pytest.raises(ValueError, match="unknown metric"):
        lens_figure(lens, "nope")
