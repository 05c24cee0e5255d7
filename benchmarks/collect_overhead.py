"""Collector overhead: time and peak memory of every forward collector vs the fastest plain forward.

For SmolLM2-135M, Qwen2.5-0.5B and a zoo model (12 × 256), on the same random tokens (`--time-batches` batches
of `--batch` × `--seq`), interleaved in one process, `--repeats` rounds (median and spread of each, and of the
per-round ratios; CPU seconds of the process, which a busy neighbour disturbs least, and wall seconds):
  plain     the fastest forward with no hooks: transformers SDPA (the zoo: its own SDPA forward)
  collect   interp.collect with every forward collector (ResidualStats, MassiveActivations,
            LayerEffect(skip=False), NormScales); none of them reads the output, so the forwards after the
            first stop as they enter the unembedding (`interp.collectors.trunk`): no logits are formed
  collect_logits  the same with `trunk.ENABLED` off: every forward forms its logits, as the plain one does
  trunk     the plain forward up to the unembedding's input (the zoo: `final_hidden`; transformers: the base model,
            final norm included), no hooks: the work a collect does besides its statistics. collect / trunk
            (paired by round, `paired_ratio`) is what the statistics alone cost; collect_logits / plain the same
            measured with the logits
  tl_cache  TransformerLens: TransformerBridge.run_with_cache (the zoo: its own run_with_cache) of the same
            sites the collectors read (names_filter), no statistics computed
  nnsight   nnsight's trace with .save() of the same tensors (norm inputs in place of their scales, which
            the models compute internally), when nnsight is installed (a dev extra); on its own copy of the
            model, since tracing wraps every module of the model it is given (4 % slower plain forwards)
  peak RSS  of a fresh subprocess doing only that, at 1× and 10× the batches (`--mem-batches`).
With --long-batches N, a second set of interleaved rounds (after the first, which it leaves as it was) times plain
and collect over --time-batches and over N batches, which splits a collect's cost into the ratio of each further
batch and a fixed cost per run (binding the collectors, building the tables).
With --processes P, the rounds run in P fresh processes, one after another, and each interval resamples the
processes as well as their rounds (`timing.median_ci_grouped`): whole re-runs of the benchmark differ by more than
one process's interval says. Each median ratio comes with its 95 % bootstrap interval over the rounds; the goal
(collect / plain ≤ 1.10, CPU) is judged on that interval: met, not met, or inconclusive when it straddles 1.10
(`timing.goal_verdict`); collect / trunk is judged against the same 1.10 beside it.
Run: .venv/bin/python benchmarks/collect_overhead.py [--models zoo,smollm2-135m,qwen2.5-0.5b] [--repeats 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ZOO = {"n_layers": 12, "d_model": 256, "n_heads": 4, "d_mlp": 1024, "n_ctx": 512, "d_vocab": 4096}
MODES = ("plain", "collect", "collect_logits", "trunk", "tl_cache", "nnsight")
GOAL = 1.10  # collect / plain, CPU: issue 15's goal, fixed before any run


def have_nnsight() -> bool:
    return importlib.util.find_spec("nnsight") is not None


def site_names(m) -> list[str]:
    """The hooks the forward collectors read on `m` (what the other tools are asked to capture)."""
    from interp.collectors.driver import default_collectors
    names = []
    for c in default_collectors():
        c.bind(m)
        names += [h for h, _ in c.hooks(m)]
    return list(dict.fromkeys(names))


def nnsight_saver(module, layers_path: str, parts: list[tuple[str, str]], final: str | None):
    """fn(tokens) tracing `module` with nnsight and saving, per layer in execution order, each (submodule,
    "input" | "output") of `parts`, then the final norm's input."""
    from nnsight import NNsight
    nm = NNsight(module)

    def get(obj, path):
        for p in path.split(".") if path else []:
            obj = getattr(obj, p)
        return obj

    def run(tokens, **kw):
        saved = []
        with nm.trace(tokens, **kw):
            for layer in get(nm, layers_path):
                for sub, what in parts:
                    v = getattr(get(layer, sub), what)
                    saved.append((v[0] if isinstance(v, tuple) else v).save())
            if final:
                saved.append(get(nm, final).input.save())
        return saved
    return run


def load(name: str):
    """(interp model, {mode: fn(tokens)}) for `name`: every mode runs the same tokens."""
    import torch

    import interp
    if name == "zoo":
        m = interp.zoo.build("pre-ln", **ZOO).eval()
        sites = site_names(m)
        fns = {"plain": lambda t: m(t), "trunk": lambda t: m.final_hidden(t),
               "tl_cache": lambda t: m.run_with_cache(t, names_filter=sites)}
        if have_nnsight():  # on its own copy: nnsight wraps every module it traces, which slows later forwards
            import copy
            parts = [("hook_resid_pre", "output"), ("ln1.hook_in", "output"), ("hook_attn_out", "output"),
                     ("ln2.hook_in", "output"), ("hook_mlp_out", "output"), ("hook_resid_post", "output")]
            fns["nnsight"] = nnsight_saver(copy.deepcopy(m), "blocks", parts, None)
        return m, fns
    from transformers import AutoModelForCausalLM, AutoTokenizer
    m = interp.load_model(name).eval()
    d = m.hf.config._name_or_path  # the fp32 safetensors copy the wrapper was loaded from
    plain = AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa", dtype=torch.float32).eval()
    sites = site_names(m)
    state = {}

    def bridge(t):
        if "b" not in state:
            from transformer_lens.model_bridge import TransformerBridge
            hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
            hf.config.architectures = [type(hf).__name__]
            state["b"] = TransformerBridge.boot_transformers(d, hf_model=hf, tokenizer=AutoTokenizer.from_pretrained(d),
                                                             device="cpu")
        return state["b"].run_with_cache(t, names_filter=sites)

    fns = {"plain": lambda t: plain(input_ids=t, use_cache=False).logits,
           "trunk": lambda t: plain.base_model(input_ids=t, use_cache=False).last_hidden_state, "tl_cache": bridge}
    if have_nnsight():
        parts = [("", "input"), ("input_layernorm", "input"), ("self_attn", "output"),
                 ("post_attention_layernorm", "input"), ("mlp", "output"), ("", "output")]
        own = AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa", dtype=torch.float32).eval()
        saver = nnsight_saver(own, "model.layers", parts, "model.norm")  # not `plain`: nnsight wraps its modules
        fns["nnsight"] = lambda t: saver(t, use_cache=False)
    return m, fns


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


def vocab_of(name: str) -> int:
    return 4096 if name == "zoo" else 40000


def work(mode: str, name: str, scale: int, batch: int, seq: int) -> dict:
    """One measurement in this process: run `mode` over `scale` batches; peak RSS (MB) during the run and the
    RSS before it (model loaded), and seconds."""
    import torch

    import interp
    m, fns = load(name)
    toks = batches(scale, batch, seq, vocab_of(name))
    probe = PeakRSS()
    t0 = time.perf_counter()
    with torch.no_grad():
        if mode == "collect":
            interp.collect(m, torch.cat(toks), batch_size=batch, progress=False)
        else:
            for t in toks:
                out = fns[mode](t)
                del out
    seconds = time.perf_counter() - t0
    peak, before = probe.close()
    return {"seconds": seconds, "peak_rss_mb": peak, "rss_before_mb": before,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def timing(name: str, batch: int, seq: int, repeats: int, n_batches: int, long_batches: int = 0) -> dict:
    """Every mode over the same `n_batches` batches, interleaved (see timing.interleaved); with long_batches >
    n_batches, then a second interleaved set of plain and collect over n_batches and over long_batches batches
    (`split`, see `per_batch`), apart from the first so that the first set's rounds stay as they were."""
    import torch
    from timing import interleaved

    import interp
    import interp.collectors.trunk as trunk
    m, fns = load(name)
    toks = batches(max(n_batches, long_batches), batch, seq, vocab_of(name))
    def each(f, n=n_batches):
        def run():
            for t in toks[:n]:
                f(t)  # the output (and any cache) is dropped before the next batch
        return run

    def gather(n, logits=False):
        allt = torch.cat(toks[:n])

        def run():
            trunk.ENABLED = not logits
            try:
                interp.collect(m, allt, batch_size=batch, progress=False)
            finally:
                trunk.ENABLED = True
        return run

    runs = {"plain": each(fns["plain"]), "collect": gather(n_batches), "collect_logits": gather(n_batches, True)}
    runs.update({k: each(fns[k]) for k in MODES[3:] if k in fns})
    with torch.no_grad():
        out = interleaved(runs, repeats, baseline="plain")
        if long_batches > n_batches:
            out["split"] = interleaved({"plain": runs["plain"], "collect": runs["collect"],
                                        "plain_long": each(fns["plain"], long_batches),
                                        "collect_long": gather(long_batches)}, repeats, baseline="plain")
    return out


def per_batch(t: dict, n: int, n_long: int) -> dict:
    """A collect's cost split, per round, from runs over n and n_long batches (CPU seconds): the overhead of each
    further batch over its plain forward, as collect / plain of those batches, and the fixed cost of a run (binding
    the collectors, building the tables: what the n-batch ratio carries on top of the per-batch overhead), in ms.
    Medians with their 95 % bootstrap intervals over the rounds."""
    import numpy as np
    from timing import median_ci
    c = {k: t["split"]["cpu_s"][k]["samples"] for k in ("plain", "collect", "plain_long", "collect_long")}
    ratio, fixed = [], []
    for p, col, pl, cl in zip(c["plain"], c["collect"], c["plain_long"], c["collect_long"]):
        ratio.append((cl - col) / (pl - p))
        fixed.append(1e3 * ((col - p) - n * ((cl - pl) - (col - p)) / (n_long - n)))
    return {"batches_long": n_long,
            "collect/plain per further batch (cpu, median)": float(np.median(ratio)),
            "collect/plain per further batch (cpu, 95% CI)": median_ci(ratio),
            "fixed cost per run (cpu ms, median)": float(np.median(fixed)),
            "fixed cost per run (cpu ms, 95% CI)": median_ci(fixed)}


def paired_ratio(t: dict, num: str, den: str, processes: int) -> dict:
    """num / den of CPU seconds round by round (both timed in each round), as `timing.pooled` gives each mode
    against the baseline: median and spread, with its 95 % interval resampling the processes (rounds are pooled
    in process order, `repeats` each) as well as their rounds."""
    from timing import median_ci, median_ci_grouped, summary
    r = [a / b for a, b in zip(t["cpu_s"][num]["samples"], t["cpu_s"][den]["samples"])]
    k = len(r) // processes
    groups = [r[i * k:(i + 1) * k] for i in range(processes)]
    return {**summary(r), "ci95": median_ci_grouped(groups) if processes > 1 else median_ci(r)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="zoo,smollm2-135m,qwen2.5-0.5b")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--time-batches", type=int, default=4)
    ap.add_argument("--long-batches", type=int, default=0,
                    help="also time plain and collect over this many batches (> --time-batches) and split a collect's "
                         "cost into a per-batch ratio and a fixed cost per run (0: not measured)")
    ap.add_argument("--mem-batches", type=int, default=10, help="the larger run of the memory check (× 1 batch)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-models", default="smollm2-135m,zoo",
                    help="models whose peak RSS is measured (fresh subprocesses; '' for none)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows already in benchmarks/results/collect_overhead.json of other models or other CPUs "
                         "(each row records its CPU, date and the command that measured it)")
    ap.add_argument("--processes", type=int, default=1,
                    help="run the timed rounds in this many fresh processes, one after another (--repeats rounds each), "
                         "and judge the goal on an interval that resamples the processes too (timing.median_ci_grouped)")
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "MODEL", "SCALE"), help=argparse.SUPPRESS)
    ap.add_argument("--timing-worker", metavar="MODEL", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.processes < 1:
        ap.error(f"--processes {a.processes}: give 1 or more processes")
    if a.long_batches and a.long_batches <= a.time_batches:
        ap.error(f"--long-batches {a.long_batches} must exceed --time-batches {a.time_batches} (or be 0: no split)")
    import torch
    torch.set_num_threads(a.threads)
    if a.worker:
        mode, name, scale = a.worker
        print(json.dumps(work(mode, name, int(scale), a.batch, a.seq)))
        return
    if a.timing_worker:
        print(json.dumps(timing(a.timing_worker, a.batch, a.seq, a.repeats, a.time_batches, a.long_batches)))
        return
    from record import command_line, machine_name, recorded_rows, row_key, utc_now, write_result
    from timing import goal_key, goal_verdict, load_info, pooled
    rows, here = recorded_rows("collect_overhead") if a.merge else {}, machine_name()
    for name in a.models.split(","):
        before = load_info()
        if a.processes > 1:
            runs = []
            for _ in range(a.processes):
                cmd = [sys.executable, __file__, "--timing-worker", name, "--batch", str(a.batch), "--seq", str(a.seq),
                       "--repeats", str(a.repeats), "--time-batches", str(a.time_batches),
                       "--long-batches", str(a.long_batches), "--threads", str(a.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                runs.append(json.loads(out))
            t = pooled(runs)
        else:
            t = timing(name, a.batch, a.seq, a.repeats, a.time_batches, a.long_batches)
        split = per_batch(t, a.time_batches, a.long_batches) if a.long_batches > a.time_batches else {}
        alone = paired_ratio(t, "collect", "trunk", a.processes)
        row = {"model": name, "machine": here, "date": utc_now(), "tokens_per_batch": a.batch * a.seq,
               "timed_batches": a.time_batches, "repeats": t["repeats"],
               "processes": a.processes,
               **{f"{k}/plain (cpu, median)": v["median"] for k, v in t["ratio_cpu"].items()},
               "collect/plain (cpu, 95% CI)": t["ratio_cpu"]["collect"]["ci95"],
               **({"collect/plain (cpu, median of each process)": t["ratio_cpu"]["collect"]["per_process_median"],
                   "collect/plain (cpu, 95% CI over rounds alone)": t["ratio_cpu"]["collect"]["ci95_rounds"]}
                  if a.processes > 1 else {}),
               goal_key(GOAL): goal_verdict(t["ratio_cpu"]["collect"]["ci95"], GOAL),
               "collect/trunk (cpu, median)": alone["median"], "collect/trunk (cpu, 95% CI)": alone["ci95"],
               goal_key(GOAL, ", collect/trunk"): goal_verdict(alone["ci95"], GOAL),
               "collect_logits/plain (cpu, 95% CI)": t["ratio_cpu"]["collect_logits"]["ci95"],
               goal_key(GOAL, ", collect_logits/plain"): goal_verdict(t["ratio_cpu"]["collect_logits"]["ci95"], GOAL),
               **{f"{k}/plain (wall, median)": v["median"] for k, v in t["ratio_wall"].items()},
               **split,
               "nnsight": have_nnsight(), "timing": t, "load_before": before, "load_after": load_info(),
               "command": command_line()}
        if name in a.memory_models.split(","):
            rss = {}
            for mode in ("plain", "collect", "tl_cache"):
                for scale in (1, a.mem_batches):
                    cmd = [sys.executable, __file__, "--worker", mode, name, str(scale), "--batch", str(a.batch),
                           "--seq", str(a.seq), "--threads", str(a.threads)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                    rss[mode, scale] = json.loads(out)
            big = a.mem_batches
            row.update({f"rss_{m}_{s}x_mb": rss[m, s]["peak_rss_mb"] for m in ("plain", "collect", "tl_cache")
                        for s in (1, big)})
            row.update({"rss_before_plain_mb": rss["plain", 1]["rss_before_mb"],
                        "rss collect/plain 1x": rss["collect", 1]["peak_rss_mb"] / rss["plain", 1]["peak_rss_mb"],
                        f"rss collect {big}x/1x": rss["collect", big]["peak_rss_mb"] / rss["collect", 1]["peak_rss_mb"],
                        f"rss tl_cache/plain {big}x": rss["tl_cache", big]["peak_rss_mb"] / rss["plain", big]["peak_rss_mb"]})
        rows[row_key(name, here)] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "timing"}, indent=1), flush=True)
        if not a.no_write:  # after each model: a long run interrupted later keeps what it measured
            print(write_result("collect_overhead", rows, threads=a.threads, description=__doc__.split("\n")[0]))


if __name__ == "__main__":
    main()
