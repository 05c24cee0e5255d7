"""Forward time of Pre-LN vs its equivalent Pre-RMSNorm and Pre-CRMSNorm forms (Jiang et al. 2023 claim 1–10 %).

    .venv/bin/python benchmarks/convert_speed.py          # writes benchmarks/results/convert_speed.json

One thread, float32, random-init zoo models (speed does not depend on the weights), interleaved repeats,
median time per form: one row per size and form, with the ratio to Pre-LN.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import interp
from interp.surgery import to_crmsnorm, to_rmsnorm
from record import write_result

SIZES = [dict(n_layers=4, d_model=64, n_heads=4, d_mlp=256, n_ctx=128),      # the zoo's size
         dict(n_layers=4, d_model=256, n_heads=8, d_mlp=1024, n_ctx=128)]


def bench(size: dict, batch: int, reps: int) -> dict:
    base = interp.zoo.build("pre-ln", **size).eval()
    forms = {"pre-ln": base, "pre-rmsnorm": to_rmsnorm(base), "pre-crmsnorm": to_crmsnorm(base)}
    tok = torch.randint(0, base.cfg.d_vocab, (batch, size["n_ctx"]))
    times = {k: [] for k in forms}
    with torch.inference_mode():
        for m in forms.values():
            m(tok)  # warm-up
        for _ in range(reps):
            for k, m in forms.items():
                t0 = time.perf_counter()
                m(tok)
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [dict(form=k, n_layers=size["n_layers"], d_model=size["d_model"], batch=batch, seq=size["n_ctx"], reps=reps,
                 median_ms=med[k] * 1e3, ratio_to_pre_ln=med[k] / med["pre-ln"]) for k in med]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = [r for s in SIZES for r in bench(s, args.batch, args.reps)]
    for r in rows:
        print(f"d_model {r['d_model']:4d} {r['form']:13s} {r['median_ms']:8.2f} ms  ratio {r['ratio_to_pre_ln']:.3f}")
    write_result("convert_speed", rows, threads=1, description=__doc__.split("\n\n")[0].replace("\n", " "))


if __name__ == "__main__":
    main()
