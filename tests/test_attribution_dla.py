"""DLA against brute force: sums to the logits of forward, matches a hand-written frozen-scale DLA, and its
direct effect matches hooking the real model (write removed from the final residual, final norm recomputed)."""
import pytest
import torch

import interp
from interp.attribution import dla, dla_summary

KW = dict(n_layers=3, d_model=32, n_heads=4, d_mlp=48, d_vocab=80, n_ctx=12, init_std=0.25)


def model(name, **kw):
    m = interp.zoo.build(name, **{**KW, **kw}).double().eval()
    with torch.no_grad():  # non-trivial norm gains and biases, so the bias rows are exercised
        for n, p in m.named_parameters():
            if n.endswith(".w"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif n.endswith(".b") or n.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return m


TOK = torch.randint(0, 80, (3, 9), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["pre-ln", "peri-ln", "post-ln", "mix-ln", "lns", "pre-rmsnorm", "pre-crmsnorm", "no-norm",
                                  "mdlm-ln"])  # mdlm-ln adds a timestep embedding to the stream: a component too
def test_rows_sum_to_the_forward_logit(name):
    m = model(name)
    df = dla(m, TOK, target=3, contrast=11, pos=[-1, 0, 4], neuron_layers=[1])
    logits = m(TOK).detach()
    for j, p in enumerate([8, 0, 4]):
        want = float(logits[j, p, 3] - logits[j, p, 11])
        rows = df[df.batch == j]
        assert rows["dla"].sum() == pytest.approx(want, abs=1e-10)
        comps = rows[rows.direct_effect.notna()]
        assert comps["dla"].sum() == pytest.approx(want - rows[rows.direct_effect.isna()]["dla"].sum(), abs=1e-10)
    assert set(df.component) >= {"embed", "pos_embed", "L0.H3", "L0.attn_bias", "L0.mlp", "L1.N47", "L1.mlp_bias"}


def test_no_norm_dla_is_exact_and_pre_ln_is_not():
    s0 = dla_summary(dla(model("no-norm"), TOK, target=5))
    assert s0.max_rel_error[0] < 1e-12 and s0.total_rel_error[0] < 1e-12
    s1 = dla_summary(dla(model("pre-ln"), TOK, target=5))
    assert s1.max_rel_error[0] > 1e-4


def _write_of_head(m, cache, l, h, j, p):
    W_O = m.blocks[l].attn.out.weight  # [d, h*dh]
    dh = m.cfg.d_head
    return cache[f"blocks.{l}.attn.hook_z"][j, p, h] @ W_O[:, h * dh:(h + 1) * dh].T


def test_pre_ln_against_brute_force():
    m = model("pre-ln")
    df = dla(m, TOK, target=7, pos=-1)
    _, cache = m.run_with_cache(TOK)
    ln = m.ln_final
    for comp, (l, h) in {"L1.H2": (1, 2), "L2.H0": (2, 0)}.items():
        for j in range(3):
            c = _write_of_head(m, cache, l, h, j, 8)
            want_dla = ((c - c.mean()) / cache["ln_final.hook_scale"][j, 8, 0] * ln.w) @ m.W_U[:, 7]

            def remove(x, hook):  # path ablation: the write leaves the final residual only
                x = x.clone()
                x[j, 8] -= c
                return x
            ablated = m.run_with_hooks(TOK, fwd_hooks=[("ln_final.hook_in", remove)])
            want_de = float(m(TOK)[j, 8, 7] - ablated[j, 8, 7])
            row = df[(df.component == comp) & (df.batch == j)].iloc[0]
            assert row.dla == pytest.approx(float(want_dla), abs=1e-10)
            assert row.direct_effect == pytest.approx(want_de, abs=1e-10)


def test_peri_ln_direct_effect_recomputes_output_norm():
    m = model("peri-ln")
    df = dla(m, TOK, target=7, pos=-1, neuron_layers=[0])
    _, cache = m.run_with_cache(TOK)
    l, n, j, p = 0, 5, 1, 8
    raw = cache[f"blocks.{l}.ln2_post.hook_in"][j, p]
    c = cache[f"blocks.{l}.mlp.hook_post"][j, p, n] * m.blocks[l].mlp.down.weight[:, n]
    delta = m.blocks[l].ln2_post(raw[None, None])[0, 0] - m.blocks[l].ln2_post((raw - c)[None, None])[0, 0]

    def remove(x, hook):
        x = x.clone()
        x[j, p] -= delta
        return x
    want = float(m(TOK)[j, p, 7] - m.run_with_hooks(TOK, fwd_hooks=[("ln_final.hook_in", remove)])[j, p, 7])
    row = df[(df.component == f"L{l}.N{n}") & (df.batch == j)].iloc[0]
    assert row.direct_effect == pytest.approx(want, abs=1e-10)


def test_bad_input():
    m = model("pre-ln")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        dla(m, TOK, target=80)
    with pytest.raises(ValueError, match="unknown component 'L9.H0'"):
        dla(m, TOK, target=1, components=["L9.H0"])
    with pytest.raises(ValueError, match="neuron layer 5"):
        dla(m, TOK, target=1, neuron_layers=[5])
    with pytest.raises(ValueError, match="DyT"):
        dla(model("dyt"), TOK, target=1)
    assert list(dla(m, TOK, target=1, components=["L0.H1"]).component.unique()) == ["L0.H1"]


@pytest.mark.parametrize("name", ["pre-ln", "peri-ln", "no-norm", "mdlm-uncond"])
def test_sublayer_dla_agrees_with_heads_and_brute_force(name):
    from interp.attribution import dla_sublayers
    m = model(name)
    sub = dla_sublayers(m, TOK, target=4, contrast=9)
    logits = m(TOK).detach()
    for j in range(3):
        rows = sub[sub.batch == j]
        assert rows.dla.sum() == pytest.approx(float(logits[j, -1, 4] - logits[j, -1, 9]), abs=1e-9)
    fine = dla(m, TOK, target=4, contrast=9)
    if name != "peri-ln":  # pre / none: the heads and the out bias of a layer add up to its attention write
        f = fine[(fine.layer == 1) & fine.kind.isin(["head", "attn_bias"])].groupby("batch").dla.sum()
        assert sub[sub.component == "L1.attn"].set_index("batch").dla.values == pytest.approx(f.values, abs=1e-10)
    _, cache = m.run_with_cache(TOK)
    c = cache["blocks.1.hook_attn_out"][:, -1]

    def remove(x, hook):
        x = x.clone()
        x[:, -1] -= c
        return x
    name_in = "ln_final.hook_in" if m.cfg.final_norm else "blocks.2.hook_resid_post"
    abl = m.run_with_hooks(TOK, fwd_hooks=[(name_in, remove)]).detach()
    want = (logits[:, -1, 4] - logits[:, -1, 9]) - (abl[:, -1, 4] - abl[:, -1, 9])
    assert sub[sub.component == "L1.attn"].direct_effect.values == pytest.approx(want.numpy(), abs=1e-9)


@pytest.fixture(scope="module")
def smollm2():
    try:
        return interp.load_model("smollm2-135m")
    except Exception as e:  # the packaged weights are installed by `make models`
        pytest.skip(f"SmolLM2 not available: {e}")


def test_real_model_rows_sum_to_logit(smollm2):
    tok = torch.tensor([smollm2.tokenizer.encode("The capital of France is")])
    df = dla(smollm2, tok, target=" Paris")
    logit = float(smollm2(tok)[0, -1, smollm2.tokenizer.encode(" Paris")[0]])
    assert df.dla.sum() == pytest.approx(logit, rel=1e-4)
    assert len(df) == 1 + 2 * 30 + 1 and df[df.direct_effect.notna()].rel_error.max() > 1e-3
    with pytest.raises(ValueError, match="not a single token"):
        dla(smollm2, tok, target=" Paris is lovely")


def test_timestep_embedding_is_a_component_with_its_direct_effect():
    m = model("mdlm-ln")
    df = dla(m, TOK, target=5, pos=-1)
    _, cache = m.run_with_cache(TOK)
    c = cache["hook_t_embed"]  # [b, d], added to every position

    def remove(x, hook):  # path ablation: the embedding leaves the final residual only
        x = x.clone()
        x[:, -1] -= c
        return x
    want = (m(TOK)[:, -1, 5] - m.run_with_hooks(TOK, fwd_hooks=[("ln_final.hook_in", remove)])[:, -1, 5]).detach()
    rows = df[df.component == "t_embed"]
    assert list(rows.kind) == ["t_embed"] * 3 and rows.direct_effect.values == pytest.approx(want.numpy(), abs=1e-10)


def test_targets_and_positions_as_tensors_and_bad_shapes():
    m = model("pre-ln")
    want = dla(m, TOK, target=7, pos=[2, -1, 4])
    got = dla(m, TOK, target=torch.tensor(7), pos=torch.tensor([2, -1, 4]))  # e.g. logits[0, -1].argmax()
    assert got.dla.tolist() == want.dla.tolist()
    from interp.attribution import dla_sublayers
    assert dla_sublayers(m, TOK, target=torch.tensor(7)).dla.tolist() == dla_sublayers(m, TOK, target=7).dla.tolist()
    with pytest.raises(ValueError, match="at least one position"):
        dla(m, TOK[:, :0], target=7)
    with pytest.raises(ValueError, match="at least one position"):
        dla(m, TOK[None], target=7)
    with pytest.raises(ValueError, match="not a token id"):
        dla(m, TOK, target=7.5)  # not silently read as 7
    with pytest.raises(ValueError, match="not a whole position"):
        dla(m, TOK, target=7, pos=2.5)  # not silently read as 2
    with pytest.raises(ValueError, match="not a whole position"):
        dla(m, TOK, target=7, pos=[2, -1.5, 4])


def test_sublayer_dla_with_a_frozen_divisor_final_norm():
    """A FakeLN final norm (LN removal's stage 'ln_final': a constant divisor, another one at position 0) has a
    `scale` buffer, not a method; its direct effect at a later position uses that position's divisor."""
    from interp.attribution import dla_sublayers
    from interp.norms import FakeLN
    from interp.surgery.remove_ln import _refresh
    m = model("pre-ln")
    m.ln_final = FakeLN(32, scale=1.7, scale_pos0=0.4).double()
    _refresh(m)
    logits, cache = m.run_with_cache(TOK)
    sub = dla_sublayers(m, TOK, target=5, pos=-1)
    c = cache["blocks.1.hook_attn_out"][:, -1]

    def remove(x, hook):
        x = x.clone()
        x[:, -1] -= c
        return x
    abl = m.run_with_hooks(TOK, fwd_hooks=[("ln_final.hook_in", remove)])
    want = (logits[:, -1, 5] - abl[:, -1, 5]).detach()
    assert sub[sub.component == "L1.attn"].direct_effect.values == pytest.approx(want.numpy(), abs=1e-10)
    for j in range(3):
        assert sub[sub.batch == j].dla.sum() == pytest.approx(float(logits[j, -1, 5]), abs=1e-10)


def test_summary_of_a_component_subset_reports_no_sum_gap():
    """A few kept components do not add up to the metric by design: no 'sum gap' that reads as DLA failing."""
    m = model("pre-ln")
    full = dla_summary(dla(m, TOK, target=5))
    assert full.max_sum_gap[0] < 1e-10
    part = dla_summary(dla(m, TOK, target=5, components=["L0.H1"]))
    assert part.max_sum_gap.isna().all() and part.bias_share.isna().all() and part.n_components[0] == 1


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_with_attention_mask_equals_each_sequence_alone(side):
    m = model("pre-ln")
    short, pad, real = TOK[1, :5], torch.zeros(4, dtype=torch.long), torch.ones(5, dtype=torch.bool)
    row, mask = ((torch.cat([pad, short]), torch.cat([~real[:4], real])) if side == "left" else
                 (torch.cat([short, pad]), torch.cat([real, ~real[:4]])))
    tokens, masks = torch.stack([TOK[0], row]), torch.stack([torch.ones(9, dtype=torch.bool), mask])
    batch = dla(m, tokens, target=7, pos=[-1, -1 if side == "left" else 4], neuron_layers=[1], attention_mask=masks)
    alone = dla(m, short, target=7, pos=-1, neuron_layers=[1])
    got = batch[batch.batch == 1]
    assert got.dla.values == pytest.approx(alone.dla.values, abs=1e-10)
    assert got.direct_effect.values == pytest.approx(alone.direct_effect.values, abs=1e-10, nan_ok=True)
    assert got.metric.values == pytest.approx(alone.metric.values, abs=1e-10)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        dla(m, tokens, target=7, attention_mask=masks[:, :5])


def test_one_position_as_a_0d_tensor_is_read_for_every_sequence():
    """pos=torch.tensor(-1) (e.g. from argmax) is one position, as target=torch.tensor(7) is one target; it was
    refused as 'out of range' for a batch of more than one."""
    m = model("pre-ln")
    assert dla(m, TOK, target=7, pos=torch.tensor(-1)).dla.tolist() == dla(m, TOK, target=7, pos=-1).dla.tolist()


def test_targets_and_positions_as_numpy_arrays():
    """One value per sequence as a numpy array (e.g. a DataFrame column's .values) reads like a list; a target
    array raised TypeError and a position array was refused as out of range."""
    import numpy as np
    m = model("pre-ln")
    want = dla(m, TOK, target=[7, 3, 9], pos=[2, -1, 4])
    got = dla(m, TOK, target=np.array([7, 3, 9]), pos=np.array([2, -1, 4]))
    assert got.dla.tolist() == want.dla.tolist()
    from interp.attribution import logit_lens
    nxt = torch.randint(0, 80, TOK.shape, generator=torch.Generator().manual_seed(1))
    assert logit_lens(m, TOK, target=nxt.numpy()).target_logprob.tolist() == \
        logit_lens(m, TOK, target=nxt).target_logprob.tolist()
    with pytest.raises(ValueError, match="not a whole position"):
        dla(m, TOK, target=7, pos=np.array([2.0, -1.5, 4.0]))


def test_bias_rows_can_be_kept_by_name():
    """'ln_final.bias' and 'b_U' are rows of dla's table like any component: components= keeps them (they were
    refused as unknown components)."""
    m = model("pre-ln", unembed_bias=True)
    full = dla(m, TOK, target=7)
    keep = ["L0.H1", "ln_final.bias", "b_U"]
    part = dla(m, TOK, target=7, components=keep)
    assert set(part.component) == set(keep)
    want = full[full.component.isin(keep)].reset_index(drop=True)
    assert part.dla.tolist() == want.dla.tolist() and part.component.tolist() == want.component.tolist()


@pytest.mark.parametrize("name", ["post-ln", "deepnorm", "peri-ln", "reordered"])
def test_every_placement_against_hooked_path_ablation(name):
    """Brute force through the model's own forward: every sublayer output held at its cached value (so no sublayer
    sees the change), the component removed from its raw write; with every path norm's scale hooked to its cached
    value this is DLA, with the scales recomputed it is the direct effect."""
    from interp.attribution.replay import path_norms
    m = model(name)
    df = dla(m, TOK, target=7, pos=-1, neuron_layers=[1])
    peri = m.blocks[0].placement in ("peri", "reordered")
    raw = {k: (f"blocks.{l}.ln{i}_post.hook_in" if peri else f"blocks.{l}.hook_{k.split('.')[1]}_out")
           for l in range(3) for i, k in ((1, f"{l}.attn"), (2, f"{l}.mlp"))}
    scales = [f"{n}.hook_scale" for n, _ in path_norms(m)]
    logits, cache = m.run_with_cache(TOK)
    c = {"L0.H2": ("0.attn", _write_of_head(m, cache, 0, 2, slice(None), 8)),
         "L1.N5": ("1.mlp", cache["blocks.1.mlp.hook_post"][:, 8, 5, None] * m.blocks[1].mlp.down.weight[:, 5])}
    for comp, (site, vec) in c.items():
        held = {h: cache[h].clone() for h in raw.values()}
        held[raw[site]][:, 8] -= vec
        fix = [(h, lambda x, hook, v=v: v) for h, v in held.items()]
        frozen = [(s, lambda x, hook, v=v: v) for s, v in {s: cache[s].clone() for s in scales}.items()]
        want_de = logits[:, 8, 7] - m.run_with_hooks(TOK, fwd_hooks=fix)[:, 8, 7]
        want_dla = m.run_with_hooks(TOK, fwd_hooks=frozen)[:, 8, 7] - m.run_with_hooks(TOK, fwd_hooks=fix + frozen)[:, 8, 7]
        rows = df[df.component == comp]
        assert rows.direct_effect.values == pytest.approx(want_de.detach().numpy(), abs=1e-10)
        assert rows.dla.values == pytest.approx(want_dla.detach().numpy(), abs=1e-10)
