"""The collector contract: exact merge (hypothesis), padding invariance, clear errors, Results round trip."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interp
import interp.zoo as zoo
from interp.collectors import (GradNorms, LayerEffect, MassiveActivations, NonFiniteError, NormScales,
                            ResidualStats, Results, collect)
from interp.collectors.batches import to_sequences


def make_collectors():
    return [ResidualStats(), MassiveActivations(abs_threshold=0.05, ratio=3.0, top_k=8),
            LayerEffect(ns=(1, 2), skip=True), NormScales(), GradNorms()]


@pytest.fixture(scope="module")
def model():
    return zoo.build("peri-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256)


def seqs(seed, n):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 12, (n,), generator=g).tolist()
    return [torch.randint(0, 256, (k,), generator=g).tolist() for k in lens]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n_a=st.integers(1, 3), n_b=st.integers(1, 3))
def test_merge_equals_one_run(model, seed, n_a, n_b):
    data = seqs(seed, n_a + n_b)
    whole = make_collectors()
    collect(model, data, whole, batch_size=1, progress=False)
    a, b = make_collectors(), make_collectors()
    collect(model, data[:n_a], a, batch_size=1, progress=False)
    collect(model, data[n_a:], b, batch_size=1, progress=False)
    for cw, ca, cb in zip(whole, a, b):
        ca.merge(cb)
        for k, v in cw.state_dict().items():
            torch.testing.assert_close(ca.state[k], v, rtol=1e-12, atol=1e-12, msg=f"{cw.name}.{k}")


def test_merge_refuses_a_different_config(model):
    a, b = MassiveActivations().bind(model), MassiveActivations(ratio=10).bind(model)
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(b)


def _tables_equal(t1, t2, skip=()):
    for name, df in t1.items():
        if name in skip:
            continue
        other = t2[name]
        assert list(df.columns) == list(other.columns), name
        for c in df.columns:
            if pd.api.types.is_float_dtype(df[c]):
                np.testing.assert_allclose(df[c].to_numpy(), other[c].to_numpy(), rtol=2e-5, atol=1e-7,
                                           err_msg=f"{name}.{c}")
            else:
                assert (df[c].to_numpy() == other[c].to_numpy()).all(), f"{name}.{c}"


@pytest.mark.parametrize("exclude_first", [False, True])
def test_padding_never_changes_a_statistic(model, exclude_first):
    data = seqs(7, 5)
    cols = lambda: [ResidualStats(), MassiveActivations(abs_threshold=0.05, ratio=3.0, top_k=8),
                    LayerEffect(ns=(1, 2)), NormScales()]
    padded = collect(model, data, cols(), batch_size=5, exclude_first=exclude_first, progress=False)
    alone = collect(model, data, cols(), batch_size=1, exclude_first=exclude_first, progress=False)
    _tables_equal(padded.tables, alone.tables, skip=("norm_scales_hist",))
    g1 = collect(model, data, [GradNorms()], batch_size=5, progress=False)["grad_norms"]
    g2 = collect(model, data, [GradNorms()], batch_size=1, progress=False)["grad_norms"]
    s1, s2 = g1[g1.kind == "stream"], g2[g2.kind == "stream"]  # per-token gradients do not depend on batching
    np.testing.assert_allclose(s1["mean"], s2["mean"], rtol=1e-4)


def test_left_padding_matches_right_padding(model):
    class Tok:  # a tokenizer that pads on the left
        bos_id, pad_id, add_bos, padding_side = None, 0, False, "left"
        encode = staticmethod(lambda text: [int(c) for c in text.split()])
        decode = staticmethod(lambda ids: " ".join(map(str, ids)))
    texts = [" ".join(map(str, s)) for s in seqs(3, 4)]
    model.tokenizer = Tok()
    try:
        left = collect(model, texts, [ResidualStats(), MassiveActivations(abs_threshold=0.05, ratio=3.0)],
                       batch_size=4, progress=False)
    finally:
        model.tokenizer = None
    right = collect(model, seqs(3, 4), [ResidualStats(), MassiveActivations(abs_threshold=0.05, ratio=3.0)],
                    batch_size=4, progress=False)
    _tables_equal(left.tables, right.tables, skip=("massive_top",))
    np.testing.assert_allclose(left["massive_top"]["abs"], right["massive_top"]["abs"], rtol=1e-5)
    assert (left["massive_top"]["position"].to_numpy() == right["massive_top"]["position"].to_numpy()).all()


def test_empty_input_is_a_clear_error(model):
    for data in ([], [[]], torch.zeros(0, 4, dtype=torch.long)):
        with pytest.raises(ValueError, match="no tokens|empty"):
            collect(model, data, [ResidualStats()], progress=False)
    with pytest.raises(ValueError, match="no tokenizer"):
        collect(model, ["some text"], [ResidualStats()], progress=False)
    with pytest.raises(ValueError, match="no collectors"):
        collect(model, [[1, 2]], [], progress=False)


def test_overlong_text_is_split_or_truncated(model):
    long = list(range(1, 41))  # 40 tokens, context 16
    split = to_sequences(model, [long], 16, "split")
    assert [len(s) for s in split] == [16, 16, 8] and sum(split, []) == long
    assert to_sequences(model, [long], 16, "truncate") == [long[:16]]
    with pytest.raises(ValueError, match="more than the context"):
        to_sequences(model, [long], 16, "error")
    res = collect(model, [long], [ResidualStats()], progress=False)
    assert res.meta["n_tokens"] == 40 and res.meta["n_sequences"] == 3
    res = collect(model, [long], [ResidualStats()], overflow="truncate", progress=False)
    assert res.meta["n_tokens"] == 16
    res = collect(model, [long, long], [ResidualStats()], max_tokens=20, progress=False)
    assert res.meta["n_tokens"] == 20


def test_split_keeps_bos_on_every_window():
    class Tok:
        bos_id, pad_id, add_bos, padding_side = 99, 0, True, "right"
        encode = staticmethod(lambda text: list(range(1, 31)))
    m = type("M", (), {"tokenizer": Tok()})()
    windows = to_sequences(m, ["x"], 16, "split")
    assert all(w[0] == 99 for w in windows) and sum((w[1:] for w in windows), []) == list(range(1, 31))


def test_non_finite_activations_name_the_site():
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=256)
    with torch.no_grad():
        model.blocks[1].mlp.down.bias[3] = math.inf
    for c in (ResidualStats(), MassiveActivations(), LayerEffect(skip=False), NormScales()):
        with pytest.raises(NonFiniteError, match="blocks.1|ln_final|non-finite"):
            collect(model, [[1, 2, 3, 4]], [c], progress=False)
    with pytest.raises(NonFiniteError, match="blocks.1.hook_mlp_out"):
        collect(model, [[1, 2, 3, 4]], [ResidualStats()], progress=False)
    with pytest.raises(NonFiniteError, match="not finite"):
        collect(model, [[1, 2, 3, 4]], [GradNorms()], progress=False)


def test_results_round_trip(model, tmp_path):
    res = interp.collect(model, seqs(1, 3), progress=False)  # the callable package, default collectors
    assert {"residual", "massive", "layer_effect", "norm_scales"} <= set(res.tables)
    path = res.save(tmp_path / "r")
    back = Results.load(path)
    assert back.card == res.card and back.meta["n_tokens"] == res.meta["n_tokens"]
    for name, df in res.tables.items():
        pd.testing.assert_frame_equal(back[name], df, check_dtype=False)
    for name, stt in res.states.items():
        for k, v in stt.items():
            assert torch.equal(back.states[name][k], v)
    with pytest.raises(ValueError, match="--force"):
        res.save(path)  # an earlier result is replaced only on request
    res.save(path, force=True)  # overwriting an earlier result works and leaves no temp dirs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    with pytest.raises(FileNotFoundError, match="no saved results"):
        Results.load(tmp_path / "nothing")


def test_collect_leaves_no_hooks(model):
    collect(model, seqs(2, 2), make_collectors(), progress=False)
    assert not any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())


def test_collect_restores_each_module_mode(model):
    model.train()
    model.blocks[0].eval()  # a wrapper in train mode around an eval-mode submodule (as wrapped HF models are)
    collect(model, seqs(2, 2), [ResidualStats()], progress=False)
    assert model.training and not model.blocks[0].training and model.blocks[1].training
    model.eval()


def test_topk_update_in_chunks_equals_a_brute_force_sort():
    """Rows folded in chunk by chunk (those below every kept value are dropped before the sort) leave the k rows
    a sort of all rows by (value descending, fields ascending) ranks first; ties and a NaN included."""
    from interp.collectors.base import TopK
    g = torch.Generator().manual_seed(0)
    n, k = 300, 7
    rows = {"v": torch.randint(0, 12, (n,), generator=g).double(), "a": torch.randint(0, 3, (n,), generator=g).double(),
            "b": torch.arange(n, dtype=torch.float64)}
    rows["v"][200] = float("nan")
    buf = TopK(k, "v", ("a", "b"))
    state = buf.empty()
    for s in range(0, n, 40):
        buf.update(state, {f: r[s: s + 40] for f, r in rows.items()})
    key = lambda i: (-float("inf") if np.isnan(rows["v"][i]) else -rows["v"][i].item(), rows["a"][i].item(), i)
    order = sorted(range(n), key=key)[:k]
    assert state["b"].tolist() == order
    assert np.isnan(state["v"][0]) and state["v"][1:].tolist() == rows["v"][order[1:]].tolist()
