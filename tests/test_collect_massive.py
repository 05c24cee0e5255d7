"""MassiveActivations against a brute-force per-sequence computation from run_with_cache."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import interp.zoo as zoo
from interp.collectors import MassiveActivations, collect

PLACEMENTS = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm"]
LENGTHS = (9, 5, 7, 3)


def data(vocab=512, seed=0, padded=True):
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(1, vocab, (len(LENGTHS), max(LENGTHS)), generator=g)
    toks[:, 0] = 0  # a "BOS" that carries the massive activation below
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(LENGTHS):
        mask[i, :n if padded else None] = True
    return toks, mask


def model_with_massive(strategy, big=3000.0):
    """A zoo model whose token 0 embeds a huge value in dim 5 (and a smaller one in dim 9)."""
    m = zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    with torch.no_grad():
        m.embed.weight[0, 5] = big
        m.embed.weight[0, 9] = -big / 2
    return m


def brute(model, toks, mask, thr, ratio, k):
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    per_depth, cand, dims = [], [], {}
    for j, h in enumerate(model.sites.stream()):
        top, meds, n_massive, seq_with, top1max = [], [], 0, 0, 0.0
        for s in range(len(toks)):
            x = cache[h][s][mask[s]].double()           # [t_s, d]
            a = x.abs()
            med = torch.median(a.flatten()).item()      # lower median, like torch / the paper
            mass = (a > thr) & (a >= ratio * med)
            n_massive += int(mass.sum())
            seq_with += int(mass.any())
            t3 = torch.sort(a.flatten(), descending=True).values[:3]
            top.append(t3.numpy())
            meds.append(med)
            top1max = max(top1max, t3[0].item())
            for p, d in mass.nonzero().tolist():
                c, v = dims.get((j, d), (0, 0.0))
                dims[(j, d)] = (c + 1, v + x[p, d].item())
            for p in range(len(x)):
                for d in range(x.shape[1]):
                    cand.append((a[p, d].item(), j, p, d))
        top = np.array(top)
        per_depth.append(dict(n_massive=n_massive, frac=seq_with / len(toks), top1=top[:, 0].mean(),
                              top2=top[:, 1].mean(), top3=top[:, 2].mean(), median=np.mean(meds), top1max=top1max))
    cand.sort(key=lambda c: -c[0])
    return per_depth, cand[:k], dims


@pytest.mark.parametrize("strategy", PLACEMENTS)
@pytest.mark.parametrize("thr,ratio", [(100.0, 1000.0), (0.05, 3.0)])
@pytest.mark.parametrize("padded", [True, False])  # unpadded batches take the one-call CPU kernel path
def test_massive_matches_brute_force(strategy, thr, ratio, padded):
    model = model_with_massive(strategy)
    toks, mask = data(padded=padded)
    col = MassiveActivations(abs_threshold=thr, ratio=ratio, top_k=10)
    res = collect(model, (toks, mask), [col], batch_size=3, progress=False)
    ref, top, dims = brute(model, toks, mask, thr, ratio, 10)
    df = res["massive"]
    for j, r in enumerate(ref):
        row = df.iloc[j]
        assert row.n_massive == r["n_massive"], (strategy, j)
        assert row.frac_sequences == pytest.approx(r["frac"])
        for col_, key in [("top1_mean", "top1"), ("top2_mean", "top2"), ("top3_mean", "top3"),
                          ("median_mean", "median"), ("top1_max", "top1max")]:
            assert row[col_] == pytest.approx(r[key], rel=1e-6), (strategy, j, col_)
    t = res["massive_top"]
    np.testing.assert_allclose(t["abs"].to_numpy(), [c[0] for c in top], rtol=1e-6)
    assert list(zip(t.depth, t.position, t.dim))[:3] == [c[1:] for c in top][:3]
    d = res["massive_dims"].set_index(["depth", "dim"])
    assert len(d) == len(dims)
    for key, (c, v) in dims.items():
        assert d.loc[key, "count"] == c
        assert d.loc[key, "mean_value"] == pytest.approx(v / c, rel=1e-5)
    if thr == 100.0 and strategy != "post-ln":  # the injected value survives in the stream
        assert df.n_massive.iloc[0] == len(LENGTHS) * 2 and set(res["massive_dims"].dim) == {5, 9}
    if not padded:  # every candidate is distinct here: the whole top-k list, with where each value sits
        assert list(zip(t.depth, t.position, t.dim)) == [c[1:] for c in top]


def test_token_median_scope():
    model = model_with_massive("pre-ln")
    toks, mask = data()
    res = collect(model, (toks, mask), [MassiveActivations(median_scope="token", abs_threshold=0.05, ratio=3)],
                  batch_size=4, progress=False)
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    for j, h in enumerate(model.sites.stream()):
        a = cache[h][mask].abs()
        med = a.median(-1, keepdim=True).values
        assert res["massive"].n_massive.iloc[j] == int(((a > 0.05) & (a >= 3 * med)).sum())


def test_ablation_matches_manual_replacement():
    model = model_with_massive("pre-ln")
    toks, mask = data()
    col = MassiveActivations()
    collect(model, (toks, mask), [col], batch_size=4, progress=False)
    ab = col.ablation(model, (toks, mask), batch_size=4).set_index("intervention")
    assert ab.loc["zero", "depth"] == 0 and ab.loc["zero", "dims"] == "5 9"
    pair = mask[:, :-1] & mask[:, 1:]
    _, cache = model.run_with_cache(toks, attention_mask=mask)
    x0 = cache["blocks.0.hook_resid_pre"]
    mean = {d: x0[:, 0, d].mean().item() for d in (5, 9)}  # every sequence's position 0 is the massive one
    for mode in ("none", "zero", "mean"):
        def edit(x, hook):
            x = x.clone()
            if mode != "none":
                for d in (5, 9):
                    x[:, 0, d] = 0.0 if mode == "zero" else mean[d]
            return x
        logits = model.run_with_hooks(toks, attention_mask=mask, fwd_hooks=[("blocks.0.hook_resid_pre", edit)])
        loss = F.cross_entropy(logits[:, :-1][pair], toks[:, 1:][pair]).item()
        assert ab.loc[mode, "loss"] == pytest.approx(loss, rel=1e-5), mode
    assert ab.loc["zero", "n_replaced"] == 2 * len(LENGTHS)


def test_ablation_without_massive_is_a_clear_error():
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_ctx=16, d_vocab=512)
    toks, mask = data()
    col = MassiveActivations()
    collect(model, (toks, mask), [col], progress=False)
    with pytest.raises(ValueError, match="no massive activations"):
        col.ablation(model, (toks, mask))


@pytest.mark.parametrize("n", [16385, 40000, 100001])
def test_lower_median_equals_torch_median(n):
    from interp.collectors.massive import lower_median
    g = torch.Generator().manual_seed(n)
    cases = [torch.randn(n, generator=g).abs(), torch.randint(0, 5, (n,), generator=g).float(),  # many ties
             torch.sort(torch.rand(n, generator=g)).values,  # sorted: the strided sample is biased
             torch.cat([torch.zeros(n // 2), torch.full((n - n // 2,), 1e4)])]
    for v in cases:
        assert lower_median(v) == torch.median(v)


def test_ablation_depth_is_where_the_largest_massive_dim_appears():
    """A small early outlier in one dim must not decide the depth: the largest massive dim's appearance does."""
    col = MassiveActivations()
    D, d = 5, 8
    col.state = {"dim_count": torch.zeros(D, d, dtype=torch.float64), "n_seq": torch.full((D,), 4.0, dtype=torch.float64),
                 "dim_value_sum": torch.zeros(D, d, dtype=torch.float64)}
    col.state["dim_count"][1, 2] = 4                      # dim 2: ~300 at depth 1, every sequence
    col.state["dim_value_sum"][1, 2] = 4 * 300.0
    col.state["dim_count"][2, 6] = 1                      # dim 6: seen once at depth 2 ...
    col.state["dim_value_sum"][2, 6] = -150.0
    col.state["dim_count"][3:, 6] = 4                     # ... then in every sequence from depth 3, at -2e4
    col.state["dim_value_sum"][3:, 6] = 4 * -2e4
    col.state["dim_seqs"] = col.state["dim_count"].clone()  # one activation per sequence here
    assert col.appearance_depth() == 3


def test_long_sequences_match_brute_force():
    """Sequences of more than 16384 values per depth: the CPU kernel's sampled-bracket medians and its top-k
    buffers (written per batch, folded in at end_batch) against the brute force."""
    m = zoo.build("pre-ln", n_layers=2, d_model=64, n_heads=4, d_mlp=128, n_ctx=300, d_vocab=512)
    with torch.no_grad():
        m.embed.weight[0, 5] = 3000.0
    g = torch.Generator().manual_seed(4)
    toks = torch.randint(1, 512, (3, 280), generator=g)
    toks[:, 0] = 0
    mask = torch.ones_like(toks, dtype=torch.bool)
    res = collect(m, (toks, mask), [MassiveActivations(top_k=10)], batch_size=2, progress=False)
    ref, top, dims = brute(m, toks, mask, 100.0, 1000.0, 10)
    df = res["massive"]
    for j, r in enumerate(ref):
        row = df.iloc[j]
        assert row.n_massive == r["n_massive"] and row.frac_sequences == pytest.approx(r["frac"])
        for col_, key in [("top1_mean", "top1"), ("top2_mean", "top2"), ("top3_mean", "top3"),
                          ("median_mean", "median"), ("top1_max", "top1max")]:
            assert row[col_] == pytest.approx(r[key], rel=1e-6), (j, col_)
    t = res["massive_top"]
    np.testing.assert_allclose(t["abs"].to_numpy(), [c[0] for c in top], rtol=1e-6)
    assert df.n_massive.sum() > 0 and len(res["massive_dims"]) == len(dims)


def tied_model():
    """Blocks that write nothing (attention and MLP outputs zeroed) and no position embedding (rotary): the stream
    at every depth is the token embedding, so every value of token 5, ±5000 in every dim, ties in |x| with every
    other one, in every occurrence and at every depth."""
    m = zoo.build("pre-ln", positions="rotary", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=64, d_vocab=100)
    with torch.no_grad():
        m.embed.weight[5] = 5000.0 * (1 - 2 * (torch.arange(32) % 3 == 1).float())
        for blk in m.blocks:
            for lin in (blk.attn.out, blk.mlp.down):
                lin.weight.zero_()
                lin.bias.zero_()
    return m


def brute_top(model, seqs, k, exclude_first=False, token_scope=False):
    """The documented top-k, each sequence run alone: every (|x|, depth, position, dim, token, value, median) of
    every counted position, sorted by |x| descending, then depth, position, dim, token, value, median."""
    rows = []
    for s in seqs:
        _, cache = model.run_with_cache(torch.tensor([s]))
        for j, h in enumerate(model.sites.stream()):
            x = cache[h][0].float()
            p0 = 1 if exclude_first else 0
            a = x[p0:].abs()
            if not len(a):
                continue
            med = a.median(-1).values if token_scope else a.flatten().median().expand(len(a))  # lower medians
            for p, d in np.ndindex(*a.shape):
                rows.append((float(a[p, d]), j, p + p0, d, s[p + p0], float(x[p + p0, d]), float(med[p])))
    return sorted(rows, key=lambda r: (-r[0], *r[1:]))[:k]


@pytest.mark.parametrize("scope", ["sequence", "token"])
def test_top_ties_are_broken_as_documented_for_any_batching(scope):
    """massive_top with many equal |x| (token 5's ±5000 at every other position, in every sequence and depth): the
    kept rows are those of the documented order (depth, position, dim, token, then value and median), on every
    path — unpadded batches (CPU kernel), padded ones and exclude_first (torch forms) — whatever the batch size.
    The torch forms pre-selected each sequence's top values with torch.topk, which breaks ties arbitrarily."""
    model = tied_model()
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(10, 100, (n,), generator=g).tolist() for n in (40, 33, 40, 40)]
    for s in seqs:
        s[2::2] = [5] * len(s[2::2])
    k = 64  # fewer than the ~600 tied values of a sequence at one depth
    for ef in (False, True):
        ref = brute_top(model, seqs, k, ef, scope == "token")
        assert ref[0][0] == ref[-1][0] == 5000.0  # every kept row is a tie
        for bs in (1, 3, 4):
            t = collect(model, seqs, [MassiveActivations(top_k=k, median_scope=scope)], batch_size=bs,
                        exclude_first=ef, progress=False)["massive_top"]
            got = list(zip(t["abs"], t.depth, t.position, t.dim, t.token_id, t.value, t.seq_median))
            np.testing.assert_allclose(np.array(got, dtype=float), np.array(ref, dtype=float), rtol=1e-6,
                                       err_msg=f"exclude_first={ef}, batch_size={bs}")


def test_appearance_depth_counts_sequences_not_activations():
    """appearance_depth: the first depth where the largest massive dim is massive in at least half the
    *sequences*. Token 5 (in one sequence of 10, at 6 positions) carries dim 3 from depth 0; block 1 writes it
    into every token (depth 2). Counting activations (6 ≥ 10 / 2) put it at depth 0; against brute force per
    (depth, dim) the fraction of sequences, on the kernel path, the padded / exclude_first torch path and a
    merge of two shards."""
    torch.manual_seed(0)
    m = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_ctx=32, d_vocab=100)
    with torch.no_grad():
        m.embed.weight[5, 3] = 5000.0
        m.blocks[1].mlp.down.bias[3] = 20000.0
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(10, 100, (12 - (i % 3),), generator=g).tolist() for i in range(10)]
    seqs[0][0::2] = [5] * 6
    for ef in (False, True):
        frac = {}  # brute force: (depth, dim) -> sequences in which it is massive / sequences
        for s in seqs:
            _, cache = m.run_with_cache(torch.tensor([s]))
            for j, h in enumerate(m.sites.stream()):
                a = cache[h][0, 1 if ef else 0:].float().abs()
                mass = (a > 100) & (a >= 1000 * a.flatten().median())
                for d in mass.any(0).nonzero()[:, 0].tolist():
                    frac[(j, d)] = frac.get((j, d), 0) + 1 / len(seqs)
        common = [j for (j, d), f in sorted(frac.items()) if d == 3 and f >= 0.5]
        assert common[0] == 2 and frac[(0, 3)] == pytest.approx(0.1)
        for bs in (4, 10):
            col = MassiveActivations()
            collect(m, seqs, [col], batch_size=bs, exclude_first=ef, progress=False)
            half = MassiveActivations()
            collect(m, seqs[:5], [half], batch_size=bs, exclude_first=ef, progress=False)
            other = MassiveActivations()
            collect(m, seqs[5:], [other], batch_size=bs, exclude_first=ef, progress=False)
            for c in (col, half.merge(other)):
                assert c.appearance_depth() == common[0] and c.ablation_target()[0] == 2
                d = c.dims().set_index(["depth", "dim"])["frac_sequences"]
                assert d.to_dict() == pytest.approx(frac), (ef, bs)
