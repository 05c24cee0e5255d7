"""Collector overhead: time and peak memory of every forward collector vs the fastest plain forward.

For SmolLM2-135M and a zoo model, on the same random tokens (batches of `--batch` × `--seq`):
  time ratio   = interp.collect(all forward collectors) / plain forward over `--time-batches` batches (transformers SDPA, no hooks; for the
                 zoo: its own SDPA forward, no hooks), best of `--repeats`, measured interleaved in one process;
                 and TransformerBridge run_with_cache (the zoo: its own run_with_cache) on the same tokens.
  peak RSS     = ru_maxrss of a fresh subprocess doing only that, at 1× and 10× the tokens (10 batches).
Run: .venv/bin/python benchmarks/collect_overhead.py [--models smollm2-135m,zoo] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ZOO = dict(n_layers=12, d_model=256, n_heads=4, d_mlp=1024, n_ctx=512, d_vocab=4096)


def load(name: str):
    """(interp model, plain forward fn(tokens), cached forward fn(tokens)) for `name`."""
    import torch
    import interp
    if name == "zoo":
        m = interp.zoo.build("pre-ln", **ZOO).eval()
        return m, (lambda t: m(t)), (lambda t: m.run_with_cache(t))
    from transformers import AutoModelForCausalLM, AutoTokenizer
    m = interp.load_model(name)
    d = m.hf.config._name_or_path  # the fp32 safetensors copy the wrapper was loaded from
    plain = AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa", dtype=torch.float32).eval()
    state = {}

    def bridge(t):
        if "b" not in state:
            from transformer_lens.model_bridge import TransformerBridge
            hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
            hf.config.architectures = [type(hf).__name__]
            state["b"] = TransformerBridge.boot_transformers(d, hf_model=hf, tokenizer=AutoTokenizer.from_pretrained(d),
                                                             device="cpu")
        return state["b"].run_with_cache(t)

    return m, (lambda t: plain(input_ids=t, use_cache=False).logits), bridge


def batches(n_batches: int, batch: int, seq: int, vocab: int):
    import torch
    g = torch.Generator().manual_seed(0)
    return [torch.randint(10, vocab, (batch, seq), generator=g) for _ in range(n_batches)]


class PeakRSS:
    """Samples this process's resident set every 2 ms (from /proc/self/statm) in a thread; keeps the max."""

    def __init__(self):
        import threading
        self.page, self.peak, self.stop = os.sysconf("SC_PAGE_SIZE"), 0, False
        self.start_rss = self.rss()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def loop(self):
        while not self.stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def close(self) -> tuple[float, float]:
        self.stop = True
        self.t.join()
        return max(self.peak, self.rss()) / 2 ** 20, self.start_rss / 2 ** 20


def work(mode: str, name: str, scale: int, batch: int, seq: int) -> dict:
    """One measurement in this process: run `mode` over `scale` batches; peak RSS (MB) during the run and
    the RSS before it (model loaded), and seconds."""
    import torch
    import interp
    m, plain, cached = load(name)
    toks = batches(scale, batch, seq, 4096 if name == "zoo" else 40000)
    probe = PeakRSS()
    t0 = time.perf_counter()
    with torch.no_grad():
        if mode == "plain":
            for t in toks:
                plain(t)
        elif mode == "collect":
            interp.collect(m, torch.cat(toks), batch_size=batch, progress=False)
        else:
            for t in toks:
                out, cache = cached(t)
                del out, cache
    seconds = time.perf_counter() - t0
    peak, before = probe.close()
    return {"seconds": seconds, "peak_rss_mb": peak, "rss_before_mb": before,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def timing(name: str, batch: int, seq: int, repeats: int, n_batches: int) -> dict:
    """Best-of-`repeats` seconds over `n_batches` batches, the three modes interleaved (fair on a shared CPU)."""
    import torch
    import interp
    m, plain, cached = load(name)
    toks = batches(n_batches, batch, seq, 4096 if name == "zoo" else 40000)
    allt = torch.cat(toks)
    runs = {"plain": lambda: [plain(t) for t in toks],
            "collect": lambda: interp.collect(m, allt, batch_size=batch, progress=False),
            "cache": lambda: [cached(t) and None for t in toks]}
    best = {k: float("inf") for k in runs}
    with torch.no_grad():
        for k in runs:
            runs[k]()  # warm up (and build the bridge once)
        for _ in range(repeats):
            for k, f in runs.items():
                t0 = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,zoo")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--time-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "MODEL", "SCALE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    if a.worker:
        mode, name, scale = a.worker
        print(json.dumps(work(mode, name, int(scale), a.batch, a.seq)))
        return
    rows = []
    for name in a.models.split(","):
        best = timing(name, a.batch, a.seq, a.repeats, a.time_batches)
        rss = {}
        for mode in ("plain", "collect", "cache"):
            for scale in (1, 10):
                cmd = [sys.executable, __file__, "--worker", mode, name, str(scale), "--batch", str(a.batch),
                       "--seq", str(a.seq), "--threads", str(a.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                rss[mode, scale] = json.loads(out)["peak_rss_mb"]
                rss[mode, scale, "before"] = json.loads(out)["rss_before_mb"]
        rows.append({"model": name, "tokens_per_batch": a.batch * a.seq, "timed_batches": a.time_batches,
                     "plain_s": best["plain"], "collect_s": best["collect"], "cache_s": best["cache"],
                     "collect/plain": best["collect"] / best["plain"], "cache/plain": best["cache"] / best["plain"],
                     **{f"rss_{m}_{s}x_mb": rss[m, s] for m in ("plain", "collect", "cache") for s in (1, 10)},
                     "rss_before_plain_mb": rss["plain", 1, "before"], "rss_before_cache_mb": rss["cache", 1, "before"],
                     "rss collect/plain 1x": rss["collect", 1] / rss["plain", 1],
                     "rss collect/plain 10x": rss["collect", 10] / rss["plain", 10],
                     "rss collect 10x/1x": rss["collect", 10] / rss["collect", 1],
                     "rss cache/plain 10x": rss["cache", 10] / rss["plain", 10]})
        print(json.dumps(rows[-1], indent=1), flush=True)
    import pandas as pd
    print(pd.DataFrame(rows).set_index("model").T.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
