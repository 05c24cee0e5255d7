"""DLA error across the trained zoo (and any extra checkpoints): how far DLA is from the true direct effect.

    .venv/bin/python benchmarks/attribution_zoo.py [--zoo data/zoo] [--extra data/zoo/pre-ln-lnfree ...]

For every checkpoint: held-out KJV windows, target = the actual next token, read at 4 positions per window;
components = embedding, position, every head, out-proj bias, every MLP. Writes
benchmarks/results/attribution_zoo.json (the `interp.attribution.dla_summary` row of each model).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from interp import data, zoo
from interp.attribution import dla, dla_summary
from record import write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--zoo", default="data/zoo")
    ap.add_argument("--extra", nargs="*", default=[])
    ap.add_argument("--seqs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dirs = sorted(p for p in Path(args.zoo).iterdir() if (p / "config.json").is_file()) + [Path(e) for e in args.extra]
    rows = []
    for d in dirs:
        m = zoo.load(d, dtype=torch.float64)
        if m.cfg.norm not in ("layernorm", "rmsnorm", "crmsnorm", "none", "fakeln"):
            print(f"skip {d.name}: DLA needs a token-wise norm with a scale ({m.cfg.norm})")
            continue
        t = m.cfg.n_ctx
        tok = data.heldout_tokens(args.seqs, t + 1)
        x, y = tok[:, :-1], tok[:, 1:]
        pos = [t // 4 - 1, t // 2 - 1, 3 * t // 4 - 1, t - 1]
        xs = x.repeat_interleave(len(pos), 0)
        ps = pos * args.seqs
        tg = [int(y[i // len(pos), ps[i]]) for i in range(len(ps))]
        s = dla_summary(dla(m, xs, tg, pos=ps)).iloc[0].to_dict()
        s["model"] = d.name
        rows.append(s)
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in s.items()})
    write_result("attribution_zoo", {r.pop("model"): r for r in [dict(r) for r in rows]}, threads=1,
                 description=__doc__.split("\n\n")[0].replace("\n", " "))
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
