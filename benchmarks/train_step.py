"""Training-step time of the zoo's pre-LN model (hooks idle) vs a plain minimal PyTorch GPT of identical size.

Both: same widths, tied embeddings, learned positions, biases, GELU MLP, causal SDPA, AdamW, same batch.
Steps alternate between the two models so that load from other processes hits both alike; we report the
median of each and their ratio (goal: zoo / plain ≤ 1.10).

    python benchmarks/train_step.py [--steps 20] [--batch 8] [--threads 1]   # benchmarks/results/train_step.json
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class PlainBlock(nn.Module):
    def __init__(self, d: int, h: int, d_mlp: int):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.h, d // self.h).unbind(2)
        z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.proj(z.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class PlainGPT(nn.Module):
    """nanoGPT in 20 lines: the reference the zoo's overhead is measured against."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_mlp: int, n_ctx: int, d_vocab: int):
        super().__init__()
        self.embed, self.pos = nn.Embedding(d_vocab, d_model), nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(PlainBlock(d_model, n_heads, d_mlp) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, d_vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def step_time(model, opt, x, y) -> float:
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import interp
    from interp.train.zoo import ZOO_SIZE
    zoo = interp.zoo.build("pre-ln", **ZOO_SIZE)
    torch.manual_seed(0)
    plain = PlainGPT(**ZOO_SIZE)
    n_zoo, n_plain = (sum(p.numel() for p in m.parameters()) for m in (zoo, plain))
    assert n_zoo == n_plain, f"sizes differ: zoo {n_zoo} vs plain {n_plain}"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, ZOO_SIZE["d_vocab"], (a.batch, ZOO_SIZE["n_ctx"] + 1), generator=g)
    x, y = x[:, :-1], x[:, 1:]
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (zoo, plain)}
    times: dict = {zoo: [], plain: []}
    for i in range(a.steps + 3):          # 3 warm-up steps each, then alternate
        for m in ((zoo, plain) if i % 2 else (plain, zoo)):
            t = step_time(m, opts[m], x, y)
            if i >= 3:
                times[m].append(t)
    tz, tp = statistics.median(times[zoo]), statistics.median(times[plain])
    out = {"params": n_zoo, "batch": a.batch, "seq": ZOO_SIZE["n_ctx"], "steps": a.steps,
           "zoo_pre_ln_ms": tz * 1e3, "plain_gpt_ms": tp * 1e3, "ratio": tz / tp}
    print(f"params {n_zoo:,} (both); batch {a.batch}x{ZOO_SIZE['n_ctx']}; {a.threads} thread(s); "
          f"median of {a.steps} steps each")
    print(f"zoo pre-ln {tz * 1e3:.1f} ms/step   plain GPT {tp * 1e3:.1f} ms/step   ratio {tz / tp:.3f} (goal ≤ 1.10)")
    from record import write_result
    write_result("train_step", out, threads=a.threads, description=__doc__.split("\n\n")[0].replace("\n", " "))


if __name__ == "__main__":
    main()
