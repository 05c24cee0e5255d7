"""The fused tail loss (variant CE without logits) against float64 brute force and against the model's own logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interp.collectors.tail_loss as TL
from interp import zoo
from interp.collectors import LayerEffect, collect
from interp.collectors.objective import loss_terms
from interp.collectors.variants import run_variants

from test_collect_variants import LENGTHS, padded  # three sequences of 9, 4 and 7 tokens, right-padded


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 8 rows × 512 columns, so a few dozen rows and a 2,500-word vocabulary span many, the last partial."""
    monkeypatch.setattr(TL, "ROW_BLOCK", 8)
    monkeypatch.setattr(TL, "VOCAB_BLOCK", 512)


@pytest.mark.parametrize("mult, cap, bias", [(1.0, None, False), (0.25, None, True), (1.0, 5.0, False),
                                             (3.0, 2.0, True)])
def test_fused_ce_equals_float64_cross_entropy(small_tiles, mult, cap, bias):
    g = torch.Generator().manual_seed(0)
    n, d, V = 37, 16, 2500
    h, w = torch.randn(n, d, generator=g), torch.randn(V, d, generator=g)
    b = torch.randn(V, generator=g) if bias else None
    t = torch.randint(0, V, (n,), generator=g)
    t[:3] = torch.tensor([0, V - 1, 2048])  # first column, last column of the partial tile, a tile's first
    logits = F.linear(h.double(), w.double(), None if b is None else b.double()) * mult
    if cap:
        logits = cap * torch.tanh(logits / cap)
    ref = F.cross_entropy(logits, t, reduction="none")
    got = TL.fused_ce(h, w, b, t, mult, cap)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)


def test_fused_ce_non_finite_row_stays_non_finite(small_tiles):
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(20, 8, generator=g), torch.randn(1500, 8, generator=g)
    h[5, 3] = torch.inf
    h[11, 0] = torch.nan
    got = TL.fused_ce(h, w, None, torch.randint(0, 1500, (20,), generator=g))
    bad = ~torch.isfinite(got)
    assert bad[5] and bad[11] and int(bad.sum()) == 2


def check_variants(model, vocab: int) -> None:
    """variant_ce is taken (not None) and equals loss_terms of each variant's own logits, right- and left-padded."""
    toks, right = padded(vocab)
    g = torch.Generator().manual_seed(2)
    d = model.cfg.d_model
    variants = [(depth, torch.randn(*toks.shape, d, generator=g)) for depth in (1, 0, 2, 1)]
    for mask in (right, right.flip(1)):
        ces = TL.variant_ce(model, toks, mask, variants)
        assert ces is not None
        for ce, out in zip(ces, run_variants(model, toks, mask, variants)):
            torch.testing.assert_close(ce, loss_terms(model, out, toks, mask).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "granite", "gemma2", "cohere", "gpt2", "gemma3_text"])
def test_variant_ce_equals_the_models_logits_transformers(family):
    from test_models_families import V, build

    from interp.models.families import wrap
    hf, _ = build(family)  # granite and cohere scale their logits, gemma2 soft-caps them
    check_variants(wrap(hf, name=f"tiny-{family}").eval(), V)


@pytest.mark.parametrize("strategy", ["pre-ln", "post-ln", "td-ln"])
def test_variant_ce_equals_the_models_logits_zoo(strategy):
    check_variants(zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval(), 300)


def test_variant_ce_declines_a_tail_it_does_not_know():
    """A model that changes its logits after the unembedding in a way it does not declare: variant_ce returns None
    and the skip losses, from the logits, still equal one forward per skipped block."""
    from test_collect_variants import skip_reference
    model = zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    own = model.forward
    model.forward = lambda tokens, attention_mask=None: own(tokens, attention_mask) * 2 - 1
    toks, mask = padded(300)
    assert TL.variant_ce(model, toks, mask, [(1, torch.zeros(*toks.shape, 32))]) is None
    res = collect(model, (toks, mask), [LayerEffect(skip=True)], batch_size=len(LENGTHS), progress=False)
    np.testing.assert_allclose(res["layer_skip"]["skipped"].to_numpy(), skip_reference(model, toks, mask), rtol=1e-5)


def test_variant_ce_is_for_next_token_models_only():
    toks, mask = padded(300)
    mdlm = zoo.build("mdlm-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    assert TL.variant_ce(mdlm, toks, mask, [(1, torch.zeros(*toks.shape, 32))]) is None
    from test_models_families import build

    from interp.models.families import wrap
    bert = wrap(build("bert")[0], name="tiny-bert").eval()
    assert TL.unembedding(bert) is None


def test_fused_ce_of_bfloat16_rows_upcasts_the_logits(small_tiles):
    """bf16 rows and weights: the logits are the bf16 product upcast to float32 (as token_ce takes bf16 logits)."""
    g = torch.Generator().manual_seed(4)
    h, w = torch.randn(12, 16, generator=g).bfloat16(), torch.randn(1300, 16, generator=g).bfloat16()
    t = torch.randint(0, 1300, (12,), generator=g)
    ref = F.cross_entropy(F.linear(h, w).double(), t, reduction="none")
    torch.testing.assert_close(TL.fused_ce(h, w, None, t).double(), ref, rtol=1e-6, atol=1e-6)


def seq_loss_brute(model, toks, mask) -> np.ndarray:
    """Per sequence: mean next-token CE over pairs of real tokens, float64 from the model's own logits."""
    with torch.no_grad():
        logits = model(toks, attention_mask=mask).double()
    pair = mask[:, :-1] & mask[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), toks[:, 1:].flatten(), reduction="none").view(pair.shape)
    return ((ce * pair).sum(1) / pair.sum(1)).numpy()


def unembedding_rows(model, run) -> list[tuple[int, int]]:
    """The [b, t] the unembedding computed logits for during run()."""
    seen = []
    h = TL.unembedding(model).register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape[:2])))
    try:
        run()
    finally:
        h.remove()
    return seen


@pytest.mark.parametrize("fused", [True, False])
def test_collect_takes_the_ce_without_logits_when_only_the_ce_is_read(monkeypatch, fused):
    """SequenceStats alone reads only the CE: the driver keeps every logit but one position's from being formed
    (one probe token, then one position per batch) and the losses equal float64 ones from the full logits; with
    tail_loss.FUSED off, every position's logits are formed."""
    from interp.analysis.sequences import SequenceStats
    monkeypatch.setattr(TL, "FUSED", fused)
    model = zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    toks, mask = padded(300)
    got = {}
    rows = unembedding_rows(model, lambda: got.update(collect(model, (toks, mask), [SequenceStats()], batch_size=2,
                                                              progress=False).tables))
    assert rows == ([(1, 1)] * 3 if fused else [(2, 9), (1, 7)])  # probe + 2 batches, or each batch whole
    loss = got["seq_loss"].sort_values("seq")
    np.testing.assert_allclose(loss["loss_sum"] / loss["n_pred"], seq_loss_brute(model, toks, mask), rtol=1e-6)


def test_collect_forms_the_logits_when_a_collector_reads_them():
    from interp.analysis.sequences import SequenceStats
    model = zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    toks, mask = padded(300)
    rows = unembedding_rows(model, lambda: collect(model, (toks, mask), [SequenceStats(), LayerEffect(skip=True)],
                                                   batch_size=3, progress=False))
    assert rows[0] == (3, 9)  # the intact batch's logits (then the skip variants, fused)
