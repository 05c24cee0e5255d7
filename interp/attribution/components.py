"""Split what each site of a zoo model writes into components: embedding, position, heads, biases, neurons.

A component is what is ADDED at a site (`interp.attribution.replay`): the token embedding, the position
embedding, the timestep embedding (`t_embed="add"`), each attention head (its hook_z through its slice of W_O),
the attention out-projection bias, each MLP (whole) or, for the chosen layers, each neuron (hook_post through its
column of W_down) plus the MLP's out bias. Per site the components sum exactly to the site's raw write. In
Peri-LN blocks the site's raw write then passes the sublayer's output norm (on the residual path, see replay).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Component:
    name: str       # e.g. "embed", "L0.H1", "L2.N17", "L1.attn_bias", "L3.mlp"
    kind: str       # embed | pos_embed | t_embed | head | attn_bias | mlp | neuron | mlp_bias
    site: int       # 0 = embedding, 1 + 2l = attention of layer l, 2 + 2l = MLP of layer l
    layer: int      # -1 for the embeddings
    index: int      # head or neuron index, -1 otherwise
    vec: torch.Tensor  # [b, d] what it adds at its site, at the chosen position of each sequence


def cache_names(n_layers: int, t_embed: bool = False) -> list[str]:
    """The hooks `split_components` reads (t_embed: the model adds a timestep embedding to the stream)."""
    return (["hook_embed", "hook_pos_embed"] + (["hook_t_embed"] if t_embed else [])
            + [f"blocks.{l}.attn.hook_z" for l in range(n_layers)] + [f"blocks.{l}.mlp.hook_post" for l in range(n_layers)])


def split_components(model, cache: dict, pos: torch.Tensor, neuron_layers: tuple[int, ...] = ()) -> list[Component]:
    """Components of a zoo model at position pos[b] of each sequence, in site order."""
    b = torch.arange(pos.shape[0])
    at = lambda name: cache[name][b, pos]  # [b, ...]
    comps = [Component("embed", "embed", 0, -1, -1, at("hook_embed")),
             Component("pos_embed", "pos_embed", 0, -1, -1, at("hook_pos_embed"))]
    if "hook_t_embed" in cache:  # DiT's timestep embedding of t, added to every position ([b, d])
        comps.append(Component("t_embed", "t_embed", 0, -1, -1, cache["hook_t_embed"]))
    for blk in model.blocks:
        l, attn, mlp = blk.layer, blk.attn, blk.mlp
        z = at(f"blocks.{l}.attn.hook_z")  # [b, h, dh]
        W_O = attn.out.weight.view(-1, attn.n_heads, attn.d_head)  # [d, h, dh]
        heads = torch.einsum("bhe,dhe->bhd", z, W_O.to(z.dtype))
        comps += [Component(f"L{l}.H{h}", "head", 1 + 2 * l, l, h, heads[:, h]) for h in range(attn.n_heads)]
        if attn.out.bias is not None:
            comps.append(Component(f"L{l}.attn_bias", "attn_bias", 1 + 2 * l, l, -1,
                                   attn.out.bias.to(z.dtype).expand_as(heads[:, 0])))
        post = at(f"blocks.{l}.mlp.hook_post")  # [b, d_mlp]
        if l in neuron_layers:
            neurons = post[:, :, None] * mlp.down.weight.T.to(post.dtype)[None]  # [b, n, d]
            comps += [Component(f"L{l}.N{n}", "neuron", 2 + 2 * l, l, n, neurons[:, n]) for n in range(post.shape[1])]
            if mlp.down.bias is not None:
                comps.append(Component(f"L{l}.mlp_bias", "mlp_bias", 2 + 2 * l, l, -1,
                                       mlp.down.bias.to(post.dtype).expand_as(neurons[:, 0])))
        else:
            comps.append(Component(f"L{l}.mlp", "mlp", 2 + 2 * l, l, -1, mlp.down(post)))
    return comps
