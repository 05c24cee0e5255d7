"""The driver's hook attachment (`attached`, `direct`) against TransformerLens' own `model.hooks` path."""
import pytest
import torch
from transformer_lens.hook_points import HookPoint

import interp.zoo as zoo
from interp.collectors.driver import attached
from interp.norms.base import observed

SIZE = dict(n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=128)


def model_and_tokens():
    m = zoo.build("pre-ln", **SIZE).eval()
    return m, torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))


def hooks(seen: dict):
    """A recording hook, a recording-and-editing hook, and a hook on a norm's scale (computed only when observed)."""
    def rec(x, hook):
        seen[hook.name] = x.detach().clone()

    def halve(x, hook):
        seen[hook.name] = x.detach().clone()
        return x * 0.5
    return [("blocks.0.hook_resid_pre", rec), ("blocks.1.hook_resid_mid", halve), ("blocks.2.ln1.hook_in", rec),
            ("blocks.2.ln1.hook_scale", rec)]


def no_direct(m) -> bool:
    return not any("forward" in h.__dict__ or "_interp_direct" in h.__dict__ for h in m.modules()
                   if isinstance(h, HookPoint))


def test_attached_matches_tl_hooks():
    m, t = model_and_tokens()
    ref_seen, seen = {}, {}
    with torch.no_grad():
        with m.hooks(fwd_hooks=hooks(ref_seen)):  # TransformerLens' PyTorch-hook path: the reference
            ref = m(t)
        with attached(m, hooks(seen), []):
            assert observed(m.blocks[2].ln1.hook_scale)  # the norm's fast path must see the hook
            out = m(t)
        plain = m(t)
    assert set(seen) == set(ref_seen) == {n for n, _ in hooks({})}
    for k in ref_seen:
        assert torch.equal(seen[k], ref_seen[k]), k
    assert torch.equal(out, ref) and not torch.equal(out, plain)  # the edit reached the output
    x = seen["blocks.2.ln1.hook_in"].double()  # the scale is the norm's: sqrt(var + eps) of its input, brute force
    want = (x.var(-1, unbiased=False, keepdim=True) + m.blocks[2].ln1.eps).sqrt()
    torch.testing.assert_close(seen["blocks.2.ln1.hook_scale"].double().reshape(want.shape), want, rtol=1e-5, atol=0)
    assert no_direct(m) and not observed(m.blocks[2].ln1.hook_scale)


def test_attached_cleans_up_after_an_error():
    m, t = model_and_tokens()
    with torch.no_grad():
        before = m(t)

        def boom(x, hook):
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError, match="boom"):
            with attached(m, [("blocks.1.hook_resid_pre", boom)], []):
                m(t)
        assert no_direct(m) and torch.equal(m(t), before)


def test_a_users_hook_keeps_its_place():
    """A point that already carries a hook gets ours as a PyTorch hook after it (the order of registration)."""
    m, t = model_and_tokens()
    hp = m.blocks[1].hook_resid_pre
    hp.add_perma_hook(lambda x, hook: x * 2.0)
    seen, ref = {}, {}
    try:
        with torch.no_grad():
            with m.hooks(fwd_hooks=[(hp.name, lambda x, hook: ref.setdefault("x", x.clone()))]):
                ref_out = m(t)
            with attached(m, [(hp.name, lambda x, hook: seen.setdefault("x", x.clone()))], []):
                assert "forward" not in hp.__dict__
                out = m(t)
        assert torch.equal(seen["x"], ref["x"]) and torch.equal(out, ref_out)
        assert len(hp.fwd_hooks) == 1  # the user's permanent hook is still there
    finally:
        hp.remove_hooks("fwd", including_permanent=True)


def test_a_low_precision_twin_made_while_attached_has_no_direct_hook():
    from interp.precision.lowp import clone
    m, t = model_and_tokens()
    with attached(m, [("blocks.0.hook_resid_pre", lambda x, hook: x * 0.0)], []):
        twin = clone(m, torch.float64)
    assert no_direct(twin) and no_direct(m)
    with torch.no_grad():
        torch.testing.assert_close(twin(t).float(), m(t), rtol=1e-4, atol=1e-4)  # the twin is the intact model


def test_collect_reads_the_site_map_once_and_a_later_bind_reads_it_again(monkeypatch):
    """One collect builds the model's site map once for all its collectors (each used to rebuild it); the map it
    handed over serves only that run's bind, so a collector bound again later sees the model's map as it is then."""
    import interp
    from interp.collectors import ResidualStats
    m = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=16, d_vocab=50).eval()
    reads = []
    cls = type(m)
    prop = cls.sites
    monkeypatch.setattr(cls, "sites", property(lambda self: reads.append(1) or prop.fget(self)))
    c = ResidualStats()
    interp.collect(m, torch.randint(0, 50, (2, 8)), progress=False)
    assert len(reads) == 1
    interp.collect(m, torch.randint(0, 50, (2, 8)), collectors=[c], progress=False)
    assert len(reads) == 2
    c.bind(m)
    assert len(reads) == 3
