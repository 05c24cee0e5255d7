"""LayerEffect (angular distance, skip-one-block loss) against brute force from run_with_cache / run_with_hooks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interp.zoo as zoo
from interp.collectors import LayerEffect, collect

PLACEMENTS = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm"]
LENGTHS = (8, 4, 6)


def data(vocab=512):
    g = torch.Generator().manual_seed(1)
    toks = torch.randint(0, vocab, (len(LENGTHS), max(LENGTHS)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = True
    return toks, mask


def ang(a, b):
    a, b = a.double(), b.double()
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.arccos(cos.clamp(-1, 1)) / np.pi


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_layer_effect_matches_brute_force(strategy):
    model = zoo.build(strategy, n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = data()
    res = collect(model, (toks, mask), [LayerEffect(ns=(1, 2), skip=True)], batch_size=2, progress=False)
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    stream = [cache[h] for h in model.sites.stream()]
    df = res["layer_effect"].set_index(["n", "depth"])
    for n in (1, 2):
        for l in range(len(stream) - n):
            a = ang(stream[l], stream[l + n])
            assert df.loc[(n, l), "angular_all"] == pytest.approx(a[mask].mean().item(), rel=1e-5)
            last = torch.tensor(LENGTHS) - 1
            assert df.loc[(n, l), "angular_last"] == pytest.approx(a[torch.arange(3), last].mean().item(), rel=1e-5)
    pair = mask[:, :-1] & mask[:, 1:]
    ce = lambda logits: F.cross_entropy(logits[:, :-1][pair].double(), toks[:, 1:][pair]).item()
    base = ce(model(toks, attention_mask=mask))
    skip = res["layer_skip"]
    assert skip.base.iloc[0] == pytest.approx(base, rel=1e-6)
    for l in range(4):
        logits = model.run_with_hooks(toks, attention_mask=mask, fwd_hooks=[
            (f"blocks.{l}.hook_resid_post", lambda x, hook, l=l: cache[f"blocks.{l}.hook_resid_pre"])])
        assert skip.skipped.iloc[l] == pytest.approx(ce(logits), rel=1e-6), (strategy, l)
        assert skip.increase.iloc[l] == pytest.approx(ce(logits) - base, abs=1e-6)


def test_bad_offsets():
    with pytest.raises(ValueError, match="positive"):
        LayerEffect(ns=(0,))


def _stream_reference(model, toks):
    """Each stream hook's tensor as the hook saw it (cloned there), from a forward with the same pre-hooks."""
    seen = {}
    hooks = [(h, lambda x, hook: seen.__setitem__(hook.name, x.detach().clone())) for h in model.sites.stream()]
    model.run_with_hooks(toks, fwd_hooks=hooks)
    return [seen[h] for h in model.sites.stream()]


def _check_angles(model, res, toks, ns=(1, 2)):
    df = res["layer_effect"].set_index(["n", "depth"])
    stream = _stream_reference(model, toks)
    for n in ns:
        for l in range(len(stream) - n):
            a = ang(stream[l], stream[l + n])
            assert df.loc[(n, l), "angular_all"] == pytest.approx(a.mean().item(), rel=1e-9, abs=1e-12)
            assert df.loc[(n, l), "angular_last"] == pytest.approx(a[:, -1].mean().item(), rel=1e-9, abs=1e-12)


def _writes_in_place(model, when):
    """Pre-hooks that add 1 in place to the stream entering blocks 1.. (after the stream hook saw it) while
    when() holds: a model that changes its stream tensor between two depths' hooks."""
    def pre(module, args):
        if when():
            args[0].add_(1.0)
    for blk in model.blocks[1:]:
        blk.register_forward_pre_hook(pre)


def test_layer_effect_reads_streams_in_place_after_the_first_batch():
    """Unpadded CPU float32 batches: the first batch copies each stream and checks that none changed before the
    next depth's hook; the later ones read the earlier stream where it lies (row norms from ResidualStats' sums).
    Angles over all batches equal float64 brute force from the cached streams."""
    from interp.collectors import ResidualStats
    model = zoo.build("pre-ln", n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512).eval()
    toks = torch.randint(0, 512, (8, 12), generator=torch.Generator().manual_seed(3))
    for cs in ([ResidualStats(), LayerEffect(ns=(1, 2), skip=False)], [LayerEffect(ns=(1, 2), skip=False)]):
        res = collect(model, toks, cs, batch_size=2, progress=False)
        assert cs[-1]._by_ref is True
        _check_angles(model, res, toks)


def test_layer_effect_keeps_copying_for_a_model_that_writes_its_stream_in_place():
    model = zoo.build("pre-ln", n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512).eval()
    _writes_in_place(model, lambda: True)
    toks = torch.randint(0, 512, (8, 12), generator=torch.Generator().manual_seed(4))
    le = LayerEffect(ns=(1, 2), skip=False)
    res = collect(model, toks, [le], batch_size=2, progress=False)
    assert le._by_ref is False
    _check_angles(model, res, toks)


def test_layer_effect_refuses_a_stream_written_in_place_only_after_the_first_batch():
    model = zoo.build("pre-ln", n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512).eval()
    calls = [0]  # forwards of a batch (the driver's one-token probe is not one)
    model.register_forward_pre_hook(lambda m, args: calls.__setitem__(0, calls[0] + (args[0].shape[1] > 1)))
    _writes_in_place(model, lambda: calls[0] >= 2)
    toks = torch.randint(0, 512, (8, 12), generator=torch.Generator().manual_seed(5))
    with pytest.raises(RuntimeError, match="in place after its hook"):
        collect(model, toks, [LayerEffect(skip=False)], batch_size=2, progress=False)


def test_layer_effect_by_reference_reads_strided_streams_correctly():
    """Every other stream tensor handed on as a strided view (a user's hook on the hook point returns one): the
    angles read by reference still equal float64 brute force."""
    model = zoo.build("pre-ln", n_layers=4, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512).eval()
    for h in model.sites.stream()[1::2]:
        model.mod_dict[h].register_forward_hook(lambda m, i, o: o.transpose(0, 1).contiguous().transpose(0, 1))
    toks = torch.randint(0, 512, (8, 12), generator=torch.Generator().manual_seed(6))
    le = LayerEffect(ns=(1, 2), skip=False)
    res = collect(model, toks, [le], batch_size=2, progress=False)
    assert le._by_ref is True
    _check_angles(model, res, toks)


def test_no_next_token_pair_gives_nan_losses():
    """Every sequence one token long: the mean next-token loss is over no pairs, 0/0, which the brute force
    (cross-entropy over the empty set of real pairs) gives as NaN; layer_skip reported 0.0."""
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = torch.tensor([[5], [6]]), torch.ones(2, 1, dtype=torch.bool)
    pair = mask[:, :-1] & mask[:, 1:]
    ref = F.cross_entropy(model(toks, attention_mask=mask)[:, :-1][pair].double(), toks[:, 1:][pair]).item()
    assert np.isnan(ref)
    df = collect(model, (toks, mask), [LayerEffect(skip=True)], batch_size=2, progress=False)["layer_skip"]
    assert df[["base", "skipped", "increase"]].isna().all().all()


def test_non_finite_stream_error_names_the_hook():
    """A stream that overflows: the error names the hooks of the angle it spoiled (it named a state key)."""
    import re

    from interp.collectors.base import NonFiniteError
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    with torch.no_grad():
        model.blocks[1].mlp.down.bias[4] = float("inf")  # the stream at depth 2 (block 1's output) is inf
    bad = re.escape(model.sites.stream()[2])
    for c in (LayerEffect(skip=False), LayerEffect(skip=True)):
        with pytest.raises(NonFiniteError, match=rf"at \S+ or {bad} \(the angle from depth 1 to depth 2\)"):
            collect(model, [[1, 2, 3]], [c], progress=False)
