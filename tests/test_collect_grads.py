"""GradNorms against autograd run by hand (retain_grad on the stream, parameter .grad) for every placement."""
import pytest
import torch
import torch.nn.functional as F

import interp.zoo as zoo
from interp.collectors import GradNorms, collect

PLACEMENTS = ["pre-ln", "post-ln", "peri-ln", "mix-ln", "lns", "no-norm"]
LENGTHS = (8, 5, 6)


def data(vocab=512):
    g = torch.Generator().manual_seed(3)
    toks = torch.randint(0, vocab, (len(LENGTHS), max(LENGTHS)), generator=g)
    mask = torch.zeros_like(toks, dtype=torch.bool)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = True
    return toks, mask


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_grad_norms_match_autograd(strategy):
    model = zoo.build(strategy, n_layers=3, d_model=32, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=512)
    toks, mask = data()
    res = collect(model, (toks, mask), [GradNorms()], batch_size=len(LENGTHS), progress=False)
    # by hand: keep the stream tensors, summed CE over pairs of real tokens, backward
    kept = {}

    def keep(x, hook):
        x.retain_grad()
        kept[hook.name] = x

    stream = model.sites.stream()
    model.zero_grad()
    logits = model.run_with_hooks(toks, attention_mask=mask, fwd_hooks=[(h, keep) for h in stream])
    pair = mask[:, :-1] & mask[:, 1:]
    loss = F.cross_entropy(logits[:, :-1][pair], toks[:, 1:][pair], reduction="sum")
    loss.backward()
    df = res["grad_norms"]
    st = df[df.kind == "stream"].reset_index(drop=True)
    for j, h in enumerate(stream):
        g = kept[h].grad[mask].double().norm(dim=-1)
        assert st["n"][j] == int(mask.sum())
        assert st["mean"][j] == pytest.approx(g.mean().item(), rel=1e-4), (strategy, h)
        assert st["max"][j] == pytest.approx(g.max().item(), rel=1e-4)
    pr = df[df.kind == "param"].reset_index(drop=True)
    for l, blk in enumerate(model.blocks):
        norm = torch.sqrt(sum(p.grad.double().pow(2).sum() for p in blk.parameters())) / int(pair.sum())
        assert pr["mean"][l] == pytest.approx(norm.item(), rel=1e-4), (strategy, l)


def test_collect_leaves_no_gradients():
    model = zoo.build("pre-ln", n_layers=2, d_model=32, n_ctx=16, d_vocab=512)
    toks, mask = data()
    collect(model, (toks, mask), [GradNorms()], progress=False)
    assert all(p.grad is None for p in model.parameters())
    assert not any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values())
