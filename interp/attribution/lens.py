"""Logit lens: read every intermediate residual stream through the final norm and the unembedding.

The final norm's statistics are RECOMPUTED on each intermediate stream (`model.apply_final_norm`), which is what
the lens means; reusing the final layer's scale on an earlier stream (TransformerLens issue #1076, fixed late)
gives a different, wrong distribution. `scale="final"` reproduces that bug on purpose, for comparison.

Columns of `logit_lens(...)`: model, layer (stream depth: 0 = block 0's input, L = the last block's output),
batch, pos, target, target_prob, target_logprob, target_rank (0 = top), kl_to_final (KL(final ‖ lens), nats),
scale ("recomputed" or "final").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch

from interp.attribution.state import kept_state
from interp.attribution.sublayers import frozen_final_norm
from interp.attribution.targets import batch_tokens, mask_kwargs, per_batch_tokens

if TYPE_CHECKING:
    from interp.contract import HookedModel


def logit_lens(model: HookedModel, tokens: torch.Tensor, target=None, scale: str = "recomputed",
               attention_mask: torch.Tensor | None = None) -> pd.DataFrame:
    """Per layer and position: rank / probability of `target` and KL to the final distribution.

    target: None (the model's own final top-1 prediction at each position), a token id / one-token string,
    one per sequence, or a [b, t] tensor of ids (e.g. the next tokens). attention_mask [b, t]: True on real
    tokens, for a padded batch (the rows of padding positions are kept; drop them by the mask).
    """
    if scale not in ("recomputed", "final"):
        raise ValueError(f"unknown scale {scale!r}; choose 'recomputed' or 'final'")
    tokens = batch_tokens(tokens)
    mask = mask_kwargs(tokens, attention_mask)
    sites = model.sites
    names = sites.stream()
    if scale == "final":
        if sites.final_norm_scale is None:
            raise ValueError(f"model {model.card.name} has no final norm scale to reuse; use scale='recomputed'")
        names = names + [sites.final_norm_scale]
    with torch.no_grad(), kept_state(model):  # a train-mode forward would move batch-statistic norms' state
        logits, cache = model.run_with_cache(tokens, names_filter=names, **mask)
        final_lp = logits.log_softmax(-1)
        final_p = final_lp.exp()  # for KL(final ‖ lens), once
        b, t, vocab = logits.shape
        if target is None:
            tgt = logits.argmax(-1)
        elif getattr(target, "ndim", 0) == 2:  # a tensor or numpy array of ids
            if target.shape != (b, t) or target.min() < 0 or target.max() >= vocab:
                raise ValueError(f"target tensor must be [{b}, {t}] ids in 0..{vocab - 1}")
            tgt = torch.as_tensor(target).long()
        else:  # one id / one-token string, or one per sequence
            tgt = per_batch_tokens(model, target, b, "target")[:, None].expand(b, t)
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("target_logprob", "target_rank", "kl_to_final")}
        frozen = frozen_final_norm(model) if scale == "final" else None
        cap = getattr(model, "logit_softcap", None)
        for name in sites.stream():
            x = cache[name]
            if scale == "recomputed":
                normed = model.apply_final_norm(x)
            else:  # the bug: divide by the final layer's scale whatever the stream
                normed = frozen(x, cache[sites.final_norm_scale])
            lens = normed @ model.W_U + (model.b_U if model.b_U is not None else 0)
            if cap:  # Gemma-2 caps its logits: the lens reads the stream the same way the model does
                lens = cap * torch.tanh(lens / cap)
            lp = lens.log_softmax(-1)
            tl = lens.gather(-1, tgt[..., None])
            cols["target_rank"].append((lens > tl).sum(-1))
            cols["kl_to_final"].append((final_p * (final_lp - lp)).sum(-1))
            cols["target_logprob"].append(lp.gather(-1, tgt[..., None])[..., 0])
        n_layers = len(cols["kl_to_final"])
        bb, pp = torch.meshgrid(torch.arange(b), torch.arange(t), indexing="ij")
        tlp = torch.stack(cols["target_logprob"]).flatten()
        df = pd.DataFrame(dict(layer=torch.arange(n_layers).repeat_interleave(b * t).numpy(),
                               batch=bb.flatten().repeat(n_layers).numpy(), pos=pp.flatten().repeat(n_layers).numpy(),
                               target=tgt.flatten().repeat(n_layers).numpy(), target_prob=tlp.exp().numpy(),
                               target_logprob=tlp.numpy(), target_rank=torch.stack(cols["target_rank"]).flatten().numpy(),
                               kl_to_final=torch.stack(cols["kl_to_final"]).flatten().numpy()))
    df.insert(0, "model", model.card.name)
    df["scale"] = scale
    return df
