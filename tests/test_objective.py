"""interp.collectors.objective: token_ce is F.cross_entropy, value for value, in chunks of rows; next_token_ce its
next-token form."""
import pytest
import torch
import torch.nn.functional as F

from interp.collectors.objective import CE_CHUNK_BYTES, token_ce


@pytest.mark.parametrize("vocab,n", [(262144, 37), (49152, 300), (4096, 70), (7, 5)])
def test_token_ce_equals_cross_entropy_exactly(vocab, n):
    """The same CE as one F.cross_entropy call on the whole [n, vocab] (bit for bit: each row's log-softmax is
    computed alone either way), ignored targets 0, also when the rows span several chunks (the first two cases)."""
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(n, vocab, generator=g) * 4
    target = torch.randint(0, vocab, (n,), generator=g)
    target[::5] = -100
    want = F.cross_entropy(logits, target, reduction="none", ignore_index=-100)
    got = token_ce(logits, target)
    assert got.shape == (n,) and torch.equal(got, want)
    assert (got[::5] == 0).all()
    if vocab >= 49152:  # several chunks of rows
        assert n > 4 * max(1, CE_CHUNK_BYTES // (4 * vocab))


def test_token_ce_upcasts_and_keeps_gradients():
    """bf16 logits are upcast exactly (as .float() on the whole would), chunk by chunk; with a gradient wanted the
    gradient is F.cross_entropy's."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(100, 65536, generator=g) * 3).to(torch.bfloat16)
    t = torch.randint(0, 65536, (100,), generator=g)
    assert 100 > 4 * (CE_CHUNK_BYTES // (4 * 65536))  # several chunks
    assert torch.equal(token_ce(x, t), F.cross_entropy(x.float(), t, reduction="none"))
    a, b = x.float().requires_grad_(), x.float().requires_grad_()
    token_ce(a, t).sum().backward()
    F.cross_entropy(b, t, reduction="sum").backward()
    assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-7)


def test_token_ce_keeps_a_non_finite_row_to_itself():
    """A row with inf / NaN logits gives a non-finite CE for that row only (the precision runs count them)."""
    x = torch.randn(50, 70000)
    x[3, 10], x[41, 0] = float("inf"), float("nan")
    ce = token_ce(x, torch.zeros(50, dtype=torch.long))
    bad = ~torch.isfinite(ce)
    assert bad.nonzero().flatten().tolist() == [3, 41]


def test_next_token_ce_is_the_loss_of_each_kept_next_token():
    """next_token_ce at [r, i] = −log softmax(logits[r, i])[tokens[r, i + 1]] where keep[r, i], else 0 (the last
    position too), against a per-position float64 computation."""
    from interp.collectors.objective import next_token_ce
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 9, 70000, generator=g)
    tokens = torch.randint(0, 70000, (3, 9), generator=g)
    keep = torch.rand(3, 8, generator=g) > 0.3
    got = next_token_ce(logits, tokens, keep)
    assert got.shape == (3, 9) and (got[:, -1] == 0).all()
    for r in range(3):
        for i in range(8):
            want = -logits[r, i].double().log_softmax(-1)[tokens[r, i + 1]] if keep[r, i] else 0.0
            assert abs(float(got[r, i]) - float(want)) < 1e-5


def test_token_ce_with_float64_as_torch_default_dtype():
    """A notebook that set torch's default dtype to float64 gets F.cross_entropy's float32 values too (the chunks'
    buffers are float32 whatever the default; a float64 buffer made log_softmax raise)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x = torch.randn(100, 70000, dtype=torch.float32)
        y = torch.randint(0, 70000, (100,))
        got = token_ce(x, y)
        assert got.dtype == torch.float32 and torch.equal(got, F.cross_entropy(x, y, reduction="none"))
    finally:
        torch.set_default_dtype(old)
