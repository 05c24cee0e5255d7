"""Real models: first load (GGUF dequantize + cache), cached load, peak RAM, 128-token forward (1 and 2 threads),
and the hooked wrapper's unobserved-forward overhead over the plain transformers model.

    .venv/bin/python benchmarks/models_speed.py            # writes benchmarks/models_speed.json
Each measurement runs in a fresh subprocess (peak RSS is per process); other processes share the CPU, so
forward times are the minimum of several runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
import interp
t = time.perf_counter(); m = interp.load_model(sys.argv[1]); load_s = time.perf_counter() - t
out = {"load_s": load_s, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
if sys.argv[3] == "fwd":  # against the same weights loaded by transformers alone (no hooks registered on it)
    from interp.models.cache import cache_root
    from interp.models.registry import REGISTRY, cache_key
    e = REGISTRY[sys.argv[1]]
    d = cache_root() / cache_key(e) if cache_key(e) else e.locate()
    ref = type(m.hf).from_pretrained(str(d), attn_implementation="sdpa").eval()
    x = torch.randint(0, m.tokenizer.vocab_size - 1, (1, 128))
    kw = {"use_cache": False} if m.card.objective == "causal_lm" else {}
    hooked, plain, hooked_cpu, plain_cpu = [], [], [], []
    with torch.no_grad():
        m(x); ref(input_ids=x, **kw)
        for _ in range(5):
            t, c = time.perf_counter(), time.process_time(); m(x)
            hooked.append(time.perf_counter() - t); hooked_cpu.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time(); ref(input_ids=x, **kw)
            plain.append(time.perf_counter() - t); plain_cpu.append(time.process_time() - c)
    # CPU time is far less disturbed by other processes than wall time; with 1 thread it is the better ratio
    out.update(fwd_hooked_s=min(hooked), fwd_plain_s=min(plain), overhead=min(hooked) / min(plain),
               overhead_cpu=min(hooked_cpu) / min(plain_cpu))
print("RESULT", json.dumps(out))
"""


def child(name: str, threads: int, mode: str, env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, name, str(threads), mode], env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(next(l for l in r.stdout.splitlines() if l.startswith("RESULT"))[7:])


def main() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    results = {}
    for name in ("smollm2-135m", "gemma-3-270m", "minilm-l6"):
        with tempfile.TemporaryDirectory() as cache:
            fresh = {**env, "INTERP_CACHE": cache}
            first = child(name, 1, "load", fresh)
            cached = child(name, 1, "load", fresh)
        one, two = child(name, 1, "fwd", env), child(name, 2, "fwd", env)
        results[name] = {"first_load_s": first["load_s"], "first_load_peak_rss_gb": first["peak_rss_gb"],
                         "cached_load_s": cached["load_s"], "cached_load_peak_rss_gb": cached["peak_rss_gb"],
                         "fwd128_1thread_s": one["fwd_hooked_s"], "fwd128_2threads_s": two["fwd_hooked_s"],
                         "plain_fwd128_1thread_s": one["fwd_plain_s"], "overhead_1thread": one["overhead"],
                         "overhead_2threads": two["overhead"],
                         "overhead_1thread_cpu_time": one["overhead_cpu"]}
        print(name, json.dumps(results[name], indent=1), flush=True)
    Path(__file__).with_suffix(".json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
