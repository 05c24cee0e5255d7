"""Tokens/s of `interp collect` on 1 vs 2 processes (1 thread each, gloo) and the bytes of
collector state each rank sends per merge, for a zoo model (and SmolLM2 when its package is installed).

    .venv/bin/python benchmarks/distributed.py [--tokens 16384] [--smollm2]   # benchmarks/results/distributed.json

The zoo model is random-init at the zoo's default size (speed and state size do not depend on the weights);
the corpus is a token file of random ids. tokens/s uses the collection loop's own time (max over ranks),
not the start-up of the processes, which is reported apart as wall seconds.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import interp  # noqa: E402
from interp.collectors import Results, default_collectors  # noqa: E402
from interp.collectors.distributed import state_bytes  # noqa: E402
from record import write_result  # noqa: E402


def run(model_dir: Path, tokens: Path, out: Path, nproc: int, batch: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "interp.cli", "collect", str(model_dir), "--data", str(tokens),
                        "-o", str(out), "--nproc", str(nproc), "--batch-size", str(batch), "--device", "cpu",
                        "--token-dtype", "uint16", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{nproc} process(es) failed: {p.stderr.strip().splitlines()[-1]}")
    m = Results.load(out).meta
    return {"nproc": nproc, "n_tokens": m["n_tokens"], "collect_seconds": m["seconds"],
            "tokens_per_s": m["n_tokens"] / m["seconds"], "wall_seconds": wall,
            "state_bytes_per_rank": m["state_bytes_per_rank"]}


def bound_bytes(model) -> dict:
    cs = default_collectors()
    for c in cs:
        c.bind(model)
    return {"total": state_bytes(cs), **{c.name: state_bytes([c]) for c in cs}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--smollm2", action="store_true", help="also report SmolLM2-135M's state bytes")
    a = ap.parse_args()
    torch.set_num_threads(1)
    report: dict = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model = interp.zoo.build("pre-ln")
        model.save(d / "model")
        cfg = model.cfg
        report["zoo_model"] = {k: getattr(cfg, k) for k in ("n_layers", "d_model", "n_ctx", "d_vocab")}
        g = np.random.default_rng(0)
        g.integers(0, cfg.d_vocab, a.tokens, dtype=np.uint16).tofile(d / "tokens.bin")
        report["runs"] = [run(d / "model", d / "tokens.bin", d / f"out{n}", n, a.batch) for n in (1, 2)]
        report["zoo_state_bytes"] = bound_bytes(model)
    r1, r2 = report["runs"]
    report["speedup_2_vs_1"] = r2["tokens_per_s"] / r1["tokens_per_s"]
    if a.smollm2:
        report["smollm2_state_bytes"] = bound_bytes(interp.load_model("smollm2-135m"))
    for r in report["runs"]:
        print(f"{r['nproc']} process(es): {r['tokens_per_s']:8.0f} tokens/s  ({r['n_tokens']} tokens in "
              f"{r['collect_seconds']:.1f} s; {r['wall_seconds']:.1f} s wall with start-up)")
    print(f"speed-up 2 vs 1: {report['speedup_2_vs_1']:.2f}x")
    for k in ("zoo_state_bytes", "smollm2_state_bytes"):
        if k in report:
            b = report[k]
            print(f"{k}: {b['total']:,} bytes per rank per merge  (" +
                  ", ".join(f"{n} {v:,}" for n, v in b.items() if n != "total") + ")")
    write_result("distributed", report, threads=1, description=__doc__.split("\n\n")[0].replace("\n", " "))


if __name__ == "__main__":
    main()
