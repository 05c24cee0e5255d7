"""AttnLogits against a brute force: each sequence run alone, its pre-softmax scores read from hook_attn_scores."""
import math

import numpy as np
import pytest
import torch

import interp.zoo as zoo
from interp.collectors import collect
from interp.collectors import attn_kernels
from interp.collectors.attn_logits import AttnLogits

SIZE = dict(n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=24, d_vocab=512)


def _data():
    g = torch.Generator().manual_seed(5)
    toks = torch.randint(0, 512, (4, 20), generator=g)
    mask = torch.ones_like(toks, dtype=torch.bool)
    mask[1, 12:] = False
    mask[3, 5:] = False
    return toks, mask


def brute_force(model, toks, mask):
    """Per (layer, head): pairs, max |score|, Σ score², max ‖q‖, max ‖k‖ over every sequence run unpadded."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n, mx, sq, qm, km = (np.zeros((L, H)) for _ in range(5))
    for row, m in zip(toks, mask):
        _, cache = model.run_with_cache(row[m][None])
        t = int(m.sum())
        tri = torch.ones(t, t, dtype=torch.bool).tril()
        for l in range(L):
            s = cache[f"blocks.{l}.attn.hook_attn_scores"][0].double()  # [h, q, k], -inf above the diagonal
            v = s[:, tri]  # [h, pairs]
            n[l] += v.shape[1]
            mx[l] = np.maximum(mx[l], v.abs().amax(1).numpy())
            sq[l] += v.pow(2).sum(1).numpy()
            qm[l] = np.maximum(qm[l], cache[f"blocks.{l}.attn.hook_q"][0].double().norm(dim=-1).amax(0).numpy())
            km[l] = np.maximum(km[l], cache[f"blocks.{l}.attn.hook_k"][0].double().norm(dim=-1).amax(0).numpy())
    return n, mx, sq, qm, km


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch"])
@pytest.mark.parametrize("strategy", ["pre-ln", "pre-rmsnorm-qk", "reordered", "deepnorm"])
def test_attn_logits_match_brute_force(strategy, compiled, monkeypatch):
    if compiled and not attn_kernels.ENABLED:
        pytest.skip("numba missing: no compiled pass")
    monkeypatch.setattr(attn_kernels, "ENABLED", compiled and attn_kernels.ENABLED)
    model = zoo.build(strategy, seed=1, **SIZE, init_std=0.2).eval()
    toks, mask = _data()
    df = collect(model, (toks, mask), [AttnLogits(head_chunk=3)], batch_size=4, progress=False)["attn_logits"]
    n, mx, sq, qm, km = brute_force(model, toks, mask)
    assert list(df.layer) == [l for l in range(3) for _ in range(4)] and list(df["head"]) == list(range(4)) * 3
    np.testing.assert_array_equal(df.n_pairs.to_numpy(), n.ravel())
    np.testing.assert_allclose(df.max_abs_logit, mx.ravel(), rtol=1e-5)
    np.testing.assert_allclose(df.rms_logit, np.sqrt(sq / n).ravel(), rtol=1e-5)
    np.testing.assert_allclose(df.max_q_norm, qm.ravel(), rtol=1e-5)
    np.testing.assert_allclose(df.max_k_norm, km.ravel(), rtol=1e-5)
    assert (df.norm_bound >= df.max_abs_logit * (1 - 1e-6)).all()  # Cauchy–Schwarz


def test_layers_table_pools_heads():
    model = zoo.build("pre-ln", seed=0, **SIZE, init_std=0.2).eval()
    toks, mask = _data()
    res = collect(model, (toks, mask), [AttnLogits()], batch_size=2, progress=False)
    heads, layers = res["attn_logits"], res["attn_logits_layers"]
    n, mx, sq, _, _ = brute_force(model, toks, mask)
    np.testing.assert_allclose(layers.max_abs_logit, mx.max(1), rtol=1e-5)
    np.testing.assert_allclose(layers.rms_logit, np.sqrt(sq.sum(1) / n.sum(1)), rtol=1e-5)
    assert list(layers.n_logits) == list(heads.groupby("layer").n_pairs.sum())


def test_merge_of_two_halves_equals_one_run():
    model = zoo.build("pre-rmsnorm-qk", seed=0, **SIZE).eval()
    toks, mask = _data()
    whole = collect(model, (toks, mask), [AttnLogits()], batch_size=4, progress=False)["attn_logits"]
    a, b = AttnLogits(), AttnLogits()
    collect(model, (toks[:2], mask[:2]), [a], batch_size=2, progress=False)
    collect(model, (toks[2:], mask[2:]), [b], batch_size=2, progress=False)
    merged = a.merge(b).result()
    for c in ("n_pairs", "max_abs_logit", "max_q_norm", "max_k_norm"):
        np.testing.assert_allclose(merged[c], whole[c], rtol=1e-6)
    np.testing.assert_allclose(merged.rms_logit, whole.rms_logit, rtol=1e-6)


def test_qk_norm_keeps_logits_within_sqrt_d_head_and_plain_attention_does_not():
    toks, mask = _data()
    top = {}
    for name in ("pre-rmsnorm", "pre-rmsnorm-qk"):
        model = zoo.build(name, seed=0, **SIZE).eval()
        with torch.no_grad():
            for blk in model.blocks:
                blk.attn.qkv.weight.mul_(100.0)
        top[name] = collect(model, (toks, mask), [AttnLogits()], batch_size=4, progress=False)["attn_logits"]
    dh = SIZE["d_model"] // SIZE["n_heads"]
    assert top["pre-rmsnorm-qk"].max_abs_logit.max() <= math.sqrt(dh) * (1 + 1e-5)
    assert top["pre-rmsnorm"].max_abs_logit.max() > 10 * math.sqrt(dh)


def test_model_without_query_key_hooks_is_refused():
    class NoQK:
        hook_dict = {}
        sites = zoo.build("pre-ln", **SIZE).sites
        card = zoo.build("pre-ln", **SIZE).card
    with pytest.raises(ValueError, match="exposes no attention query/key hooks"):
        AttnLogits().bind(NoQK())


def test_columns_and_merge_rules_are_documented():
    import re
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "results.md").read_text()
    cols_part, rules_part = doc.split("## Merge rules")
    documented = {c for line in cols_part.splitlines() if line.startswith("| `")
                  for c in re.findall(r"`([^`]+)`", line.split("|")[1])}
    model = zoo.build("pre-ln", seed=0, **SIZE).eval()
    c = AttnLogits()
    res = collect(model, [[0, 5, 6, 7], [0, 9, 8]], [c], progress=False)
    missing = {f"{t}.{col}" for t, df in res.tables.items() for col in df.columns if col not in documented}
    assert not missing, f"columns missing from docs/results.md: {sorted(missing)}"
    row = next(line for line in rules_part.splitlines() if line.startswith("| attn_logits |"))
    cells = [set(x.replace(" ", "").split(",")) - {""} for x in row.split("|")[2:6]]
    for key, rule in c.rules.items():
        assert key in cells[{"sum": 0, "max": 1, "min": 2}[rule]], key


def test_bidirectional_models_count_every_real_key():
    model = zoo.build("mdlm-ln", seed=0, **SIZE).eval()
    toks, mask = _data()
    df = collect(model, (toks, mask), [AttnLogits()], batch_size=4, progress=False)["attn_logits"]
    assert df.n_pairs.iloc[0] == int((mask.sum(1) ** 2).sum())
    _, cache = model.run_with_cache(toks[:1])
    top = max(cache[f"blocks.{l}.attn.hook_attn_scores"][0].abs().max().item() for l in range(3))
    assert df.max_abs_logit.max() >= top * (1 - 1e-5)  # sequence 0 is unpadded: its logits are among those counted


@pytest.mark.skipif(not attn_kernels.ENABLED, reason="numba missing: no compiled pass")
@pytest.mark.parametrize("causal", [True, False])
def test_compiled_scores_with_shared_key_heads_match_float64_brute_force(causal):
    """Grouped-query keys (6 query heads, 2 key heads), padded keys and uncounted queries: every attended pair."""
    g = torch.Generator().manual_seed(3)
    b, t, H, Hk, dh = 3, 9, 6, 2, 5
    q, k = torch.randn(b, t, H, dh, generator=g) * 3, torch.randn(b, t, Hk, dh, generator=g) * 3
    km = torch.rand(b, t, generator=g) > 0.3
    qm = km & (torch.rand(b, t, generator=g) > 0.3)
    n = 0
    sq, mx = np.zeros(H), np.zeros(H)
    for r in range(b):
        for i in range(t):
            for j in range(t):
                if not (qm[r, i] and km[r, j] and (j <= i or not causal)):
                    continue
                n += 1
                for h in range(H):
                    s = float(q[r, i, h].double() @ k[r, j, h // (H // Hk)].double()) / math.sqrt(dh)
                    sq[h] += s * s
                    mx[h] = max(mx[h], abs(s))
    pairs, got_sq, got_mx = attn_kernels.score_moments(q, k, qm, km, causal)
    assert pairs == n > 0
    np.testing.assert_allclose(got_sq, sq, rtol=1e-5)
    np.testing.assert_allclose(got_mx, mx, rtol=1e-5)


def test_the_cli_collects_attention_logits(tmp_path):
    """`interp collect --collectors attn_logits` (the collector was missing from the CLI's choices, though the
    report's Newer-norms section asked for it) writes the table the Python API gives on the same token file."""
    from interp.cli import main
    from interp.collectors.stream import TokenFile
    model = zoo.build("pre-rmsnorm-qk", seed=1, **SIZE, init_std=0.2).eval()
    model.save(tmp_path / "ckpt")
    np.save(tmp_path / "tokens.npy", np.random.default_rng(0).integers(0, 512, 24 * 5).astype(np.uint16))
    assert main(["collect", str(tmp_path / "ckpt"), "--data", str(tmp_path / "tokens.npy"), "-o", str(tmp_path / "out"),
                 "--collectors", "residual,attn_logits", "--batch-size", "2", "--device", "cpu", "--quiet"]) == 0
    import pandas as pd
    got = pd.read_parquet(tmp_path / "out" / "attn_logits.parquet")
    want = collect(zoo.load(tmp_path / "ckpt"), TokenFile(tmp_path / "tokens.npy"), [AttnLogits()], batch_size=2,
                   progress=False)["attn_logits"]
    assert len(got) == SIZE["n_layers"] * SIZE["n_heads"] and (got.n_pairs > 0).all()
    pd.testing.assert_frame_equal(got.drop(columns="model"), want.drop(columns="model"), check_dtype=False)
