"""What fp16 costs on this CPU: forward time of SmolLM2 (and a zoo model) in fp32, and in bf16 and fp16 each two
ways: nn.Linear as a GPU GEMM does it (operands in the format, fp32 accumulation, emulated by upcasting:
interp.precision.lowp's default) and torch's own CPU bf16 / fp16 GEMM, on the same tokens, interleaved repeats in one process (benchmarks/timing.py):
per variant the median and minimum of its wall and CPU seconds, and its CPU-time ratio to fp32 per round (median, min,
max); the machine's load before and after. Writes benchmarks/results/fp16_cost.json.
Run: .venv/bin/python benchmarks/fp16_cost.py [--models smollm2-135m,zoo] [--tokens 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def measure(name: str, n_tokens: int, repeats: int) -> dict:
    import torch

    import interp
    from interp.precision.lowp import low_precision
    from timing import interleaved, load_info
    model = (interp.zoo.build("pre-ln") if name == "zoo" else interp.load_model(name)).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(10, 4000, (1, n_tokens), generator=g)
    variants = {"fp32": model, "bf16": low_precision(model, "bf16", linear="native")[0],
                "bf16_fp32_accumulate": low_precision(model, "bf16")[0],
                "fp16_fp32_accumulate": low_precision(model, "fp16")[0],
                "fp16_native": low_precision(model, "fp16", linear="native")[0]}
    with torch.no_grad():
        before = load_info()
        t = interleaved({k: (lambda m=m: m(tokens)) for k, m in variants.items()}, repeats, baseline="fp32")
    row = {"model": name, "tokens": n_tokens, "repeats": repeats}
    for k in variants:
        row[f"{k}_cpu_s_median"] = t["cpu_s"][k]["median"]
        row[f"{k}_wall_s_min"] = t["wall_s"][k]["min"]
    for k, r in t["ratio_cpu"].items():
        row[f"{k}_vs_fp32_cpu_median"], row[f"{k}_vs_fp32_cpu_min"], row[f"{k}_vs_fp32_cpu_max"] = r["median"], r["min"], r["max"]
    return {**row, "load_before": before, "load_after": load_info()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,zoo")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    rows = [measure(n, a.tokens, a.repeats) for n in a.models.split(",")]
    for r in rows:
        print(r, flush=True)
    from record import write_result
    print(write_result("fp16_cost", rows, threads=a.threads, description=(
        "forward seconds in fp32, bf16, fp16 with fp32-accumulated linear layers (the default of interp's fp16 "
        "runs) and fp16 with torch's CPU fp16 GEMM, same tokens, interleaved repeats (CPU-time medians, ratios to "
        "fp32 per round)")))


if __name__ == "__main__":
    main()
