"""Forwards that stop at the unembedding (`interp.collectors.trunk`): when no collector reads the output, no logit
is formed, and every table equals the one from full forwards."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

import interp.collectors.trunk as TR
from interp import zoo
from interp.collectors import LayerEffect, Precision, collect
from interp.collectors.attn_logits import for_model
from interp.collectors.driver import default_collectors
from interp.collectors.tail_loss import unembedding

from test_collect_variants import LENGTHS, PLACEMENTS, padded

def forward_only(model) -> list:
    """Every collector that reads nothing of the output (attention logits where the model has q / k hooks)."""
    return default_collectors() + [Precision()] + for_model(model)


def unembedding_rows(model, run) -> list[tuple[int, int]]:
    """The [b, t] the unembedding computed logits for during run(), seen through its forward, not a hook (a hook
    there would keep the forwards whole, `test_a_hook_of_its_own_after_the_unembedding_keeps_the_forwards_whole`)."""
    u, seen = unembedding(model), []
    own = u.forward
    u.forward = lambda x: (seen.append(tuple(x.shape[:2])), own(x))[1]
    try:
        run()
    finally:
        del u.forward
    return seen


def tables_both_ways(monkeypatch, model, vocab: int, batch_size: int = 2):
    """(tables with the stop, the unembedding's [b, t] calls then, tables from full forwards), right-padded."""
    toks, mask = padded(vocab)
    got = {}
    run = lambda: got.update(collect(model, (toks, mask), forward_only(model), batch_size=batch_size,  # noqa: E731
                                     progress=False).tables)
    rows = unembedding_rows(model, run) if unembedding(model) is not None else run()
    stopped = dict(got)
    monkeypatch.setattr(TR, "ENABLED", False)
    run()
    return stopped, rows, got


def assert_same_tables(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k], check_exact=True, obj=k)


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_zoo_forwards_stop_at_the_unembedding_and_tables_are_unchanged(monkeypatch, strategy):
    model = zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    stopped, rows, full = tables_both_ways(monkeypatch, model, 300)
    assert rows == [(2, 9)]  # the first batch runs whole and shows the order; the second stops before it
    assert_same_tables(stopped, full)


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2", "gpt_neox", "phi", "bert"])
def test_transformers_forwards_stop_at_the_unembedding_and_tables_are_unchanged(monkeypatch, family):
    from test_models_families import V, build

    from interp.models.families import wrap
    hf, _ = build(family)
    model = wrap(hf, name=f"tiny-{family}").eval()
    stopped, rows, full = tables_both_ways(monkeypatch, model, V)
    assert rows == (None if family == "bert" else [(2, 9)])  # an encoder has no unembedding: nothing to stop
    assert_same_tables(stopped, full)


def test_a_collector_that_reads_the_output_gets_the_logits(monkeypatch):
    from interp.analysis.sequences import SequenceStats
    model = zoo.build("pre-ln", n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    others = [c for c in default_collectors() if c.name != "layer_effect"]
    for extra, first in ((LayerEffect(skip=True), (3, 9)), (SequenceStats(), (1, 1))):  # logits; CE through tiles
        toks, mask = padded(300)
        rows = unembedding_rows(model, lambda: collect(model, (toks, mask), others + [extra],
                                                       batch_size=len(LENGTHS), progress=False))
        assert rows[0] == first and len(rows) > 1  # the batch reaches the unembedding


class Tail(HookedRootModule):
    """embed → hook_a → unembed → hook_b (a hook point after the unembedding); hook_c never runs; again: hook_a
    runs once more at the end (a hook point used on both sides of the unembedding). `ran` says how far each forward
    got: "a" past hook_a, "b" past hook_b."""

    def __init__(self, again: bool = False):
        super().__init__()
        self.embed, self.unembed = nn.Embedding(10, 4), nn.Linear(4, 10)
        self.hook_a, self.hook_b, self.hook_c = HookPoint(), HookPoint(), HookPoint()
        self.again, self.ran = again, []
        self.setup()

    def forward(self, tokens, attention_mask=None):
        x = self.hook_a(self.embed(tokens))
        self.ran.append("a")
        out = self.hook_b(self.unembed(x))
        self.ran.append("b")
        return self.hook_a(out) if self.again else out


def forwards(trunk: TR.Trunk, m: Tail, n: int) -> list[list[str]]:
    """How far each of n forwards of m through `trunk.forward()` got."""
    out = []
    for _ in range(n):
        m.ran = []
        with trunk.forward():
            m(torch.zeros(1, 3, dtype=torch.long))
        out.append(m.ran)
    return out


def test_trunk_stops_only_when_every_hook_fired_before_the_unembedding():
    m = Tail()
    t = TR.Trunk(m, ["hook_a"])
    assert forwards(t, m, 3) == [["a", "b"], ["a"], ["a"]] and t.stop is m.unembed  # whole once, then stopped
    for names in (["hook_a", "hook_b"], ["hook_a", "hook_c"]):  # hook_b fires after it; hook_c was never seen
        t = TR.Trunk(m, names)
        assert forwards(t, m, 3) == [["a", "b"]] * 3 and t.decided and t.stop is None
    m2 = Tail(again=True)
    t = TR.Trunk(m2, ["hook_a"])
    assert forwards(t, m2, 2) == [["a", "b"]] * 2 and t.stop is None
    t = TR.Trunk(m, ["not_a_hook"])
    assert t.decided and forwards(t, m, 2) == [["a", "b"]] * 2
    assert not any(p._forward_hooks or p._forward_pre_hooks for p in m.modules())  # nothing left attached


def test_fixed_noise_level_draws_the_same_masks(monkeypatch):
    """An MDLM at a fixed t masks its input with a generator of its own in every forward: the check on the first
    batch adds no forward, so the masks, and every table, are those of full forwards."""
    from interp.diffusion import collect_over_t
    model = zoo.build("mdlm-tdln", n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=300).eval()
    toks, mask = padded(300)
    runs = []
    for on in (True, False):
        monkeypatch.setattr(TR, "ENABLED", on)
        runs.append(collect_over_t(model, (toks, mask), (0.25, 0.75), batch_size=1, progress=False))
    for t in (0.25, 0.75):
        assert_same_tables(runs[0][t].tables, runs[1][t].tables)


def test_a_hook_of_its_own_after_the_unembedding_keeps_the_forwards_whole():
    """A user's hook that the stop would silence: on the unembedding itself, on a module after it, or on the whole
    model (which ends after it). Each keeps every forward whole, so that hook fires every time."""
    m = Tail()
    for module, kind in ((m.unembed, "fwd"), (m.unembed, "pre"), (m.hook_b, "fwd"), (m, "fwd")):
        calls = []
        reg = module.register_forward_hook if kind == "fwd" else module.register_forward_pre_hook
        h = reg(lambda *a: calls.append(1))
        t = TR.Trunk(m, ["hook_a"])
        assert forwards(t, m, 3) == [["a", "b"]] * 3 and t.stop is None and len(calls) == 3
        h.remove()
