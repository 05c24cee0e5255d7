"""The Precision collector against brute force: cast each site's cached tensor with .half() / .bfloat16(),
quantize it to int8 by hand, count LLM.int8() outlier features by hand; on zoo models of every placement and
on SmolLM2. Plus the merge rule and the documentation of every column and state key."""
import math

import numpy as np
import pytest
import torch

import interp
from interp.collectors import Precision, collect
from interp.collectors.residual import residual_sites

KW = {"n_layers": 4, "d_model": 32, "n_heads": 4, "d_mlp": 64, "n_ctx": 16, "d_vocab": 256}
STRATEGIES = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm", "pre-rmsnorm", "dyt", "pre-rmsnorm-qk",
              "reordered", "deepnorm", "mdlm-ln"]


def seqs(seed: int, n: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(3, 14, (n,), generator=g).tolist()
    return [[7, 9, 20] + torch.randint(0, 256, (k - 3,), generator=g).tolist() for k in lens]  # 7, 9, 20 in each


def tiny(strategy: str, seed: int = 0):
    """A tiny zoo model whose embedding holds an fp16 overflow (token 7), values fp16 flushes to zero and
    values above the LLM.int8() threshold (token 9 in dims 3 and 5, every token in dim 11)."""
    m = interp.zoo.build(strategy, seed=seed, **KW).eval()
    with torch.no_grad():
        m.embed.weight[7, 2] = 7e4
        m.embed.weight[9, 3], m.embed.weight[9, 5] = 9.0, -12.0
        m.embed.weight[:, 11] += 8.0
        m.embed.weight[20:40, 4] = 1e-8  # flushed to zero by fp16 (|x| ≤ 2^-25) once the position embedding...
        if hasattr(m, "pos_embed"):  # ... adds nothing there (rotary models have no position embedding)
            m.pos_embed.weight[:, 4] = 0.0
    return m


def padded(model, data):
    from interp.collectors.batches import batches
    return next(batches(data, len(data), 0, "right"))


def brute(model, data, alpha=6.0, layer_frac=0.25, token_frac=0.06, exclude_first=False):
    """Per site: every statistic of the collector, from the cached tensors, the slow obvious way."""
    tokens, mask = padded(model, data)
    sites = residual_sites(model.sites)
    with torch.no_grad():  # cache only the sites: observing e.g. attention scores changes the zoo's kernels
        _, cache = model.run_with_cache(tokens, attention_mask=mask, names_filter=[s[3] for s in sites])
    if exclude_first:  # right padding: position 0 is each sequence's first token
        mask = mask.clone()
        mask[:, 0] = False
    L = model.sites.n_layers
    out, hits = {}, {}
    for layer, site, _, hook in sites:
        x = cache[hook].float()
        x = x.reshape(*x.shape[:2], -1)  # QK-norm inputs [b, t, h, d_head]: one vector per token
        rows = x[mask]  # [n, d] real tokens
        h = rows.half()
        fin = torch.isfinite(h)
        xd = rows.double()
        r = {"abs_max": rows.abs().max().item(), "frac_fp16_overflow": (~fin).double().mean().item(),
                 "frac_fp16_flush": ((h == 0) & (rows != 0)).double().mean().item(),
                 "fp16_rel_error": math.sqrt(((h.double() - xd)[fin] ** 2).sum() / (xd[fin] ** 2).sum()),
                 "bf16_rel_error": math.sqrt(((rows.bfloat16().double() - xd) ** 2).sum() / (xd ** 2).sum())}
        for per in ("tensor", "token"):
            err, tok_err = 0.0, []
            for s in range(len(data)):
                xs = x[s][mask[s]]
                if len(xs) == 0:
                    continue
                amax = xs.abs().max() if per == "tensor" else xs.abs().amax(-1, keepdim=True)
                scale = amax / 127
                q = torch.round(xs / scale).clamp(-127, 127) * scale
                err += ((q.double() - xs.double()) ** 2).sum().item()
                tok_err += ((q.double() - xs.double()).norm(dim=-1) / xs.double().norm(dim=-1)).tolist()
            r[f"int8_{per}_rel_error"] = math.sqrt(err / (xd ** 2).sum().item())
            r[f"int8_{per}_token_error"] = float(np.mean(tok_err))
        r["frac_outlier_values"] = (rows.abs() >= alpha).double().mean().item()
        out[(layer, site)] = r
        if layer < L:
            hits.setdefault(site, []).append(x.abs() >= alpha)  # [b, t, d] per layer
    features = set()
    for site, per_layer in hits.items():
        stack = torch.stack(per_layer)[:, mask]  # [L, n, d]
        in_layer = stack.any(1)  # [L, d]
        pooled = stack.double().mean((0, 1))  # over every hidden state: tokens × layers
        ok = (in_layer.double().mean(0) >= layer_frac) & (pooled >= token_frac)
        features |= {(site, int(j)) for j in ok.nonzero()[:, 0]}
        for layer in range(L):
            n = int((ok & in_layer[layer]).sum())
            out[(layer, site)]["n_outlier_features"] = n
    return out, features


COLS = ["abs_max", "frac_fp16_overflow", "frac_fp16_flush", "fp16_rel_error", "bf16_rel_error",
        "int8_tensor_rel_error", "int8_token_rel_error", "int8_tensor_token_error", "int8_token_token_error",
        "frac_outlier_values", "n_outlier_features"]


def check_against_brute(model, data, batch_size, exclude_first=False):
    res = collect(model, data, [Precision()], batch_size=batch_size, exclude_first=exclude_first, progress=False)
    ref, features = brute(model, data, exclude_first=exclude_first)
    df = res["precision"].set_index(["layer", "site"])
    assert len(df) == len(ref)
    for key, r in ref.items():
        for c in COLS:
            if c in r:
                assert df.loc[key, c] == pytest.approx(r[c], rel=2e-4, abs=1e-9), (key, c)
    got = set(zip(res["precision_outliers"]["site"], res["precision_outliers"]["dim"]))
    assert got == features
    return res


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_brute_force_on_every_placement(strategy):
    model = tiny(strategy)
    res = check_against_brute(model, seqs(1, 5), batch_size=5)  # one padded batch, as brute force runs it
    df = res["precision"]
    stream0 = df[(df.layer == 0) & (df.site == "resid_pre")].iloc[0]  # the embeddings: what was injected
    assert stream0.frac_fp16_overflow > 0 and stream0.fp16_headroom < 1
    assert stream0.frac_fp16_flush > 0 or strategy.startswith("mdlm")  # MDLM adds a time embedding there
    feats = set(res["precision_outliers"].query("site == 'resid_pre'")["dim"])
    # token 9's dims 3, 5 persist only where no Post-LN block renormalizes the stream after the embedding
    assert (11 in feats) and ({3, 5} <= feats or strategy in ("post-ln", "mix-ln", "deepnorm"))


def test_thresholds_are_options():
    model, data = tiny("pre-ln"), seqs(2, 4)
    dims = lambda c: set(collect(model, data, [c], progress=False)["precision_outliers"]
                         .query("site == 'resid_pre'")["dim"])
    assert dims(Precision(outlier_token_frac=0.5)) == {11}  # token 9 (dims 3, 5) is < 50 % of the tokens
    assert dims(Precision(outlier_threshold=1e4)) == {2}    # only the 7e4 of token 7
    assert dims(Precision(outlier_threshold=1e4, outlier_layer_frac=1.0)) == {2}  # it rides the stream
    with pytest.raises(ValueError, match="outlier_threshold"):
        Precision(outlier_threshold=0)


def test_merge_of_two_halves_equals_one_pass():
    model, data = tiny("peri-ln"), seqs(3, 6)
    whole = Precision()
    collect(model, data, [whole], batch_size=1, progress=False)
    a, b = Precision(), Precision()
    collect(model, data[:2], [a], batch_size=1, progress=False)
    collect(model, data[2:], [b], batch_size=1, progress=False)
    a.merge(b)
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(a.state[k], v, rtol=1e-12, atol=1e-12, msg=k)
    # every statistic is per token or per sequence: other batch sizes give the same tables (up to the forward's
    # own float noise, which moves a few roundings)
    c = Precision()
    collect(model, data, [c], batch_size=4, progress=False)
    for col in COLS:
        np.testing.assert_allclose(c.result()[col], whole.result()[col], rtol=1e-3, err_msg=col)
    assert c.outliers().equals(whole.outliers())


def test_merge_refuses_other_thresholds():
    model = tiny("pre-ln")
    with pytest.raises(ValueError, match="cannot merge"):
        Precision().bind(model).merge(Precision(outlier_threshold=4).bind(model))


def test_columns_and_rules_are_documented():
    from test_collect_docs import DOC, documented_columns
    res = collect(tiny("pre-ln"), seqs(4, 3), [Precision()], progress=False)
    cols = documented_columns()
    missing = {f"{t}.{c}" for t, df in res.tables.items() for c in df.columns if c not in cols}
    assert not missing, f"columns missing from docs/results.md: {sorted(missing)}"
    c = Precision().bind(tiny("pre-ln"))
    row = next(line for line in DOC.split("## Merge rules")[1].splitlines() if line.startswith("| precision |"))
    cells = [set(x.replace(" ", "").split(",")) - {""} for x in row.split("|")[2:6]]
    for key, rule in c.rules.items():
        assert key in cells[{"sum": 0, "max": 1, "min": 2}[rule]], key


@pytest.mark.slow
def test_matches_brute_force_on_smollm2():
    model = interp.load_model("smollm2-135m").eval()
    texts = ["The cat sat on the mat.", "In the beginning God created the heaven and the earth, and it was good."]
    from interp.tokenize import batch_encode
    tokens, mask = batch_encode(model.tokenizer, texts)
    data = [t[m].tolist() for t, m in zip(tokens, mask)]
    res = check_against_brute(model, data, batch_size=2)
    assert (res["precision"]["abs_max"] > 100).any()  # SmolLM2's massive activations


def fmt_edges() -> list[float]:
    """Values at the edges of fp16 / bf16 rounding: the overflow threshold, flush-to-zero, subnormal ties,
    mantissa ties (to even), carries into the exponent, fp32 subnormals."""
    f32 = lambda v: float(np.float32(v))
    return [65504.0, f32(np.nextafter(np.float32(65520), np.float32(0))), 65520.0, -7e4, 2.0 ** -25,
            f32(np.nextafter(np.float32(2.0 ** -25), np.float32(1))), 1.5 * 2.0 ** -24, 2.5 * 2.0 ** -24, -3e-8,
            2.0 ** -14, f32(2.0 ** -14 - 2.0 ** -26), 1e-40, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8,
            1 + 3 * 2.0 ** -8, -2047.5, 2047.75, 3.0e38, 1e-5, 0.0]


def test_fused_kernel_rounds_as_the_casts_do():
    """The fused kernel's fp16 / bf16 rounding errors, overflow and flush counts, one edge value at a time and on
    values spread over 47 binades, against .half() / .bfloat16() of the same float32 values, to 1e-6 relative with
    no absolute slack (float64 squares: an fp32 subnormal's error or a 3e38 value's counts too)."""
    from interp.collectors import precision_kernels as pk
    if not pk.ENABLED:
        pytest.skip("numba missing: the torch form runs")

    def brute(x):
        h = x.half()
        fin = torch.isfinite(h)
        d16 = (h.double() - x.double())[fin]
        return {pk.ERR_FP16: float((d16 ** 2).sum()), pk.ERR_BF16: float(((x.bfloat16().double() - x.double()) ** 2).sum()),
                pk.N_FP16_OVERFLOW: float((~fin).sum()), pk.N_FP16_FLUSH: float(((h == 0) & (x != 0)).sum()),
                pk.SUM_SQ_FP16_FINITE: float((x.double()[fin] ** 2).sum())}

    def fused(x):
        rows = np.arange(x.shape[0])
        return pk.site_stats(x, rows, np.zeros_like(rows), 1, 6.0)[0]

    for v in fmt_edges():
        x = torch.tensor([[v, 0.0, 0.5, -0.25]], dtype=torch.float32)
        got, ref = fused(x), brute(x)
        for slot, r in ref.items():
            assert got[slot] == pytest.approx(r, rel=1e-6, abs=0), (v, slot)
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 2, (64, 300), generator=g) * 2 - 1) * 2.0 ** (torch.rand(64, 300, generator=g) * 47 - 30)
    got, ref = fused(x.float()), brute(x.float())
    for slot, r in ref.items():
        assert got[slot] == pytest.approx(r, rel=1e-6, abs=0), slot


def test_torch_form_matches_brute_force(monkeypatch):
    """Without the fused kernel (GPU tensors, float64 models, numba missing) the torch form gives the same tables."""
    import interp.collectors.precision as mod
    monkeypatch.setattr(mod.pk, "usable", lambda x: False)
    check_against_brute(tiny("peri-ln"), seqs(5, 4), batch_size=4)


def test_qk_norm_batch_without_a_counted_token(monkeypatch):
    """exclude_first with a batch whose only sequence is one token long: on a QK-norm model the torch form (float64
    models, GPU) reshaped the per-head rows [0, h, d_head] into [0, -1] and crashed; the batch adds nothing."""
    import interp.collectors.precision as mod
    data = seqs(7, 3) + [[9]]  # batches of 3: the second holds the one-token sequence alone
    model64 = interp.zoo.build("pre-rmsnorm-qk", seed=0, dtype=torch.float64, **KW)  # the torch form, unpatched
    n = collect(model64, data, [Precision()], batch_size=3, exclude_first=True, progress=False)["precision"].n_tokens
    assert (n == sum(len(s) - 1 for s in data)).all()
    monkeypatch.setattr(mod.pk, "usable", lambda x: False)
    res = check_against_brute(tiny("pre-rmsnorm-qk"), data, batch_size=3, exclude_first=True)
    assert res["precision"]["site"].str.startswith("norm_in:q").any()


def test_headroom_below_one_is_not_always_an_overflow():
    """docs/results.md said headroom < 1 means the site overflows fp16; a value of 65510 (headroom 0.9999) rounds to
    65504 in fp16 (torch's cast), so the collector counts no overflow there and the page must say where inf starts."""
    from test_collect_docs import DOC
    x = torch.tensor([65510.0, 65519.0, 65520.0])
    assert torch.isfinite(x[:2].half()).all() and torch.isinf(x[2:].half()).all()
    model = tiny("pre-ln")
    with torch.no_grad():
        model.embed.weight[7, 2] = 65510.0  # below the 65520 where fp16 rounds to inf
        model.embed.weight[:, 11] -= 8.0
    df = collect(model, [[7, 9, 20, 3]], [Precision()], progress=False)["precision"]
    row = df[(df.layer == 0) & (df.site == "resid_pre")].iloc[0]
    assert row.fp16_headroom < 1 and row.frac_fp16_overflow == 0
    line = next(x for x in DOC.splitlines() if x.startswith("| `fp16_headroom`"))
    assert "65520" in line and "overflows that format" not in line
