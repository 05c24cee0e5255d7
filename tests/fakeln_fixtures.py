"""A tiny zoo model halfway through LN removal (a FakeLN final norm whose position-0 divisor differs), and the
brute-force entropy change of mean-ablating one last-layer neuron, read from the model's own forward."""
import torch

import interp


def frozen_divisor_model():
    """(model, tokens): a float64 2-layer Pre-LN zoo model whose final norm is FakeLN(scale 2, position 0: 0.3)."""
    from interp.norms import FakeLN
    from interp.surgery.remove_ln import _refresh
    m = interp.zoo.build("pre-ln", n_layers=2, d_model=16, n_heads=2, d_mlp=8, d_vocab=40, n_ctx=8,
                         init_std=0.5).double().eval()
    m.ln_final = FakeLN(16, scale=2.0, scale_pos0=0.3).double()
    _refresh(m)
    return m, torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def ablated_entropy_change(m, tok: torch.Tensor, neuron: int) -> float:
    """Mean |ΔH| of the next-token entropy when the last layer's `neuron` is mean-ablated: its write difference
    added at ln_final's input by hook, so the final norm sees the edited stream as the model would."""
    _, cache = m.run_with_cache(tok)
    act = cache[f"blocks.{len(m.blocks) - 1}.mlp.hook_post"]
    entropy = lambda lg: -(lg.log_softmax(-1).exp() * lg.log_softmax(-1)).sum(-1)
    d = (act[..., neuron].mean() - act[..., neuron])[..., None] * m.blocks[-1].mlp.down.weight[:, neuron]
    ablated = m.run_with_hooks(tok, fwd_hooks=[("ln_final.hook_in", lambda x, hook: x + d)])
    return float((entropy(ablated) - entropy(m(tok))).abs().mean())
