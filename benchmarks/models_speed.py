"""Real models: the hooked wrapper's unobserved forward against the plain transformers model (goal ≤ 1.05×).

    python benchmarks/models_speed.py [--repeats 9] [--tokens 128] [--threads 1] [--models a,b]
    # -> benchmarks/results/models_speed.json

Per model, in a fresh subprocess: the hooked model (`interp.load_model`) and the same checkpoint loaded by
transformers alone (same attention implementation, no hooks anywhere) run the same [1, tokens] batch, in
alternating order (A B B A ...) so that load from other processes hits both alike. Each pair gives a ratio
hooked / plain of CPU time (process_time; one thread, so other processes barely disturb it) and of wall time;
reported: the median ratio, its 95 % bootstrap interval over the pairs and its spread (min, max), the ratio of the
fastest runs (other processes only ever add time), and the median times; also the load time. Goal: median
CPU-time ratio ≤ 1.05, judged on its interval (met / not met / inconclusive, `timing.goal_verdict`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODELS = ("smollm2-135m", "gemma-3-270m", "minilm-l6", "qwen2.5-0.5b", "mpnet-base")

CHILD = r"""
import json, statistics, sys, time
import torch
name, repeats, n_tok, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
import interp
from interp.models.load import from_pretrained
t = time.perf_counter(); m = interp.load_model(name).eval(); load_s = time.perf_counter() - t
ref = from_pretrained(type(m.hf), m.hf.name_or_path, torch.float32).eval()   # the same weights, no hooks
assert sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in ref.modules()) == 0
torch.manual_seed(0)
x = torch.randint(5, m.tokenizer.vocab_size - 1, (1, n_tok))
kw = {"use_cache": False} if m.card.objective == "causal_lm" else {}
runs = {"hooked": lambda: m(x), "plain": lambda: ref(input_ids=x, **kw)}
cpu, wall = {"hooked": [], "plain": []}, {"hooked": [], "plain": []}
with torch.no_grad():
    for k in runs:  # warm-up
        runs[k]()
    for i in range(repeats):
        for k in (("hooked", "plain") if i % 2 == 0 else ("plain", "hooked")):
            t, c = time.perf_counter(), time.process_time()
            runs[k]()
            wall[k].append(time.perf_counter() - t); cpu[k].append(time.process_time() - c)
    same = torch.equal(runs["hooked"](), runs["plain"]().logits if kw else runs["plain"]().last_hidden_state)
def summary(d, k):
    r = [a / b for a, b in zip(d["hooked"], d["plain"])]
    return {f"{k}_ratio_median": statistics.median(r), f"{k}_ratio_min": min(r), f"{k}_ratio_max": max(r),
            f"{k}_ratios": r,
            f"{k}_ratio_of_minima": min(d["hooked"]) / min(d["plain"]),
            f"{k}_hooked_median_ms": 1e3 * statistics.median(d["hooked"]),
            f"{k}_plain_median_ms": 1e3 * statistics.median(d["plain"])}
print("RESULT", json.dumps({"load_s": load_s, "n_layers": m.card.n_layers, "outputs_equal": same,
                            **summary(cpu, "cpu"), **summary(wall, "wall")}))
"""


def child(name: str, repeats: int, tokens: int, threads: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run([sys.executable, "-c", CHILD, name, str(repeats), str(tokens), str(threads)], env=env,
                       capture_output=True, text=True, check=False)  # a failure is reported, not raised
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(next(l for l in r.stdout.splitlines() if l.startswith("RESULT"))[7:])


GOAL = 1.05


def judged(res: dict) -> dict:
    """res with the CPU ratio's 95 % interval over the pairs and the goal's verdict on it."""
    from timing import goal_key, goal_verdict, median_ci
    ci = median_ci(res["cpu_ratios"])
    return {**res, "cpu_ratio_ci95": ci, goal_key(GOAL): goal_verdict(ci, GOAL)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="pairs of forwards per model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from timing import goal_key
    results = {}
    for name in a.models.split(","):
        res = child(name, a.repeats, a.tokens, a.threads)
        if "error" in res:
            results[name] = {"repeats": a.repeats, "tokens": a.tokens, **res}
            print(f"{name}: not measured ({res['error']})", flush=True)
            continue
        res = results[name] = {"repeats": a.repeats, "tokens": a.tokens, **judged(res)}
        lo, hi = res["cpu_ratio_ci95"]
        print(f"{name:<14} hooked / plain: CPU time {res['cpu_ratio_median']:.3f} [95 % CI {lo:.3f}, {hi:.3f}; "
              f"{res[goal_key(GOAL)]}] range [{res['cpu_ratio_min']:.3f}, {res['cpu_ratio_max']:.3f}] "
              f"(of minima {res['cpu_ratio_of_minima']:.3f})"
              f"  wall {res['wall_ratio_median']:.3f} [{res['wall_ratio_min']:.3f}, {res['wall_ratio_max']:.3f}]  "
              f"({res['cpu_plain_median_ms']:.0f} ms plain; outputs equal: {res['outputs_equal']})",
              flush=True)
    from record import write_result
    path = write_result("models_speed", results, threads=a.threads, description=(
        "Unobserved forward of each real model through interp's hooks vs the same checkpoint in plain "
        f"transformers: [1, {a.tokens}] tokens, {a.repeats} alternating pairs, ratio hooked/plain per pair "
        "(median, 95 % bootstrap interval over the pairs, min, max) in CPU time and wall time; goal: median CPU ratio "
        "≤ 1.05, judged on the interval"))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
