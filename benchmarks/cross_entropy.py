"""Per-token cross-entropy on CPU: one F.cross_entropy call on [n, vocab] logits against `token_ce` (the same call on
row chunks of ~4 MB, `interp.collectors.objective`), which every CE of the collectors, the ablation, the skip
losses and the precision runs goes through.

    .venv/bin/python benchmarks/cross_entropy.py [--repeats 9]   # -> benchmarks/results/cross_entropy.json

For the vocabularies of the zoo (4,096), SmolLM2 (49,152), Qwen2.5 (151,936) and Gemma-3 (262,144), on random
fp32 logits of n tokens (what one batch of the main job holds), in one process, one thread: `whole` and `chunked`
in interleaved rounds; per round the ratio chunked / whole of CPU seconds, its median with a 95 % bootstrap
interval. The two must give the same values bit for bit (checked; the script stops otherwise). Each row records
THP_MEM_ALLOC_ENABLE, which the `interp` command sets to 1 (torch then puts tensors of 2 MB or more on huge
pages, so the whole call's big log-softmax output costs fewer page faults): run it with and without.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CASES = ((4096, 2048), (49152, 1024), (151936, 512), (262144, 512))  # (vocab, tokens)


def bench(vocab: int, n: int, repeats: int) -> dict:
    import torch.nn.functional as F
    from timing import interleaved

    from interp.collectors.objective import token_ce
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, vocab, generator=g) * 4
    y = torch.randint(0, vocab, (n,), generator=g)
    if not torch.equal(token_ce(x, y), F.cross_entropy(x, y, reduction="none")):
        raise SystemExit(f"vocab {vocab}: token_ce and F.cross_entropy differ; nothing written")
    t = interleaved({"whole": lambda: F.cross_entropy(x, y, reduction="none"), "chunked": lambda: token_ce(x, y)},
                    repeats, baseline="whole")
    r = t["ratio_cpu"]["chunked"]
    return {"vocab": vocab, "tokens": n, "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"),
            "repeats": repeats,
            "whole_cpu_ms (median)": round(1e3 * t["cpu_s"]["whole"]["median"], 2),
            "chunked_cpu_ms (median)": round(1e3 * t["cpu_s"]["chunked"]["median"], 2),
            "chunked/whole (cpu, median)": r["median"], "chunked/whole (cpu, 95% CI)": r["ci95"],
            "same values": True, "timing": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from record import command_line, machine_name, recorded_rows, row_key, utc_now, write_result
    rows = {}
    for vocab, n in CASES:
        row = bench(vocab, n, a.repeats)
        print({k: v for k, v in row.items() if k != "timing"}, flush=True)
        here = machine_name()
        key = f"vocab {vocab}, THP_MEM_ALLOC_ENABLE={row['THP_MEM_ALLOC_ENABLE']}"
        rows[row_key(key, here)] = {"machine": here, "command": command_line(), "date": utc_now(), **row}
    if not a.no_write:
        print(write_result("cross_entropy", {**recorded_rows("cross_entropy"), **rows}, threads=1,
                           description=__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
