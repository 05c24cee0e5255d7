"""Training-step time of the zoo: the step as the zoo runner runs it, before and after the cheaper step, per
strategy, and the zoo's pre-LN model (hooks idle) vs a plain minimal PyTorch GPT of identical size.

per_strategy: the zoo recipe's Trainer (batch 8 x 128, telemetry and per-layer logging on, eval every 400 steps)
timed from one loop iteration to the next, in two variants run in one process: "old" (the eager loss, the
for-loop AdamW and the per-parameter telemetry this repository used before; OldTelemetry below is that
code) and "new" (interp.train.fast: fused AdamW, the loss compiled where valid, the flat-vector telemetry).
Chunks of steps alternate between the two (the first variant alternates too) so that load hits both alike;
per repeat the median step, then the median and spread over repeats. Compilation is timed cold (a fresh
inductor cache): the first steps' CPU time above the steady step. eval / save: one validation pass (16
batches) and one checkpoint save with 1000 steps of logs. projected_job_cpu_s: 2000 steps + 6 evals + 9 saves
(+ compilation for "new"), one job alone on one thread. plain_vs_zoo: the zoo's pre-LN and a nanoGPT of
the same size, bare steps (no telemetry), eager and for-loop AdamW, alternating (goal: zoo / plain CPU time per
step ≤ 1.10, judged on the 95 % bootstrap interval of the per-pair ratio). breakdown: where the pre-LN step's CPU
time goes (torch.profiler, self time per part) and the floor it sets for the zoo: the shipped plan's steps at the
matrix-product and attention time alone.

    python benchmarks/train_step.py [--strategies pre-ln,powernorm] [--repeats 5] [--chunk 6] [--threads 1]
    # default: every strategy of the zoo plan; --strategies "" --update: only the breakdown and plain_vs_zoo,
    # the per-strategy rows kept (per_strategy_carried_over: the date each was measured)
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


def step_time(model, opt, x, y) -> tuple[float, float]:
    """One bare training step: (wall seconds, CPU seconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0, time.process_time() - c0


PLAIN_GOAL = 1.10


def plain_vs_zoo(steps: int, batch: int) -> dict:
    """The zoo's pre-LN against nanoGPT of the same size, steps alternating; the goal (zoo / plain CPU time per
    step ≤ 1.10) judged on the 95 % bootstrap interval of the per-pair ratio's median."""
    import interp
    from interp.train.zoo import ZOO_SIZE
    from timing import goal_key, goal_verdict, median_ci
    zoo = interp.zoo.build("pre-ln", **ZOO_SIZE)
    torch.manual_seed(0)
    plain = PlainGPT(**ZOO_SIZE)
    n_zoo, n_plain = (sum(p.numel() for p in m.parameters()) for m in (zoo, plain))
    assert n_zoo == n_plain, f"sizes differ: zoo {n_zoo} vs plain {n_plain}"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, ZOO_SIZE["d_vocab"], (batch, ZOO_SIZE["n_ctx"] + 1), generator=g)
    x, y = x[:, :-1], x[:, 1:]
    opts = {m: torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (zoo, plain)}
    wall: dict = {zoo: [], plain: []}
    cpu: dict = {zoo: [], plain: []}
    for i in range(steps + 3):          # 3 warm-up steps each, then alternate
        for m in ((zoo, plain) if i % 2 else (plain, zoo)):
            w, c = step_time(m, opts[m], x, y)
            if i >= 3:
                wall[m].append(w)
                cpu[m].append(c)
    tz, tp = statistics.median(wall[zoo]), statistics.median(wall[plain])
    ratios = [a / b for a, b in zip(cpu[zoo], cpu[plain])]
    ci = median_ci(ratios)
    verdict = goal_verdict(ci, PLAIN_GOAL)
    print(f"zoo pre-ln {tz * 1e3:.1f} ms/step   plain GPT {tp * 1e3:.1f} ms/step   CPU ratio "
          f"{statistics.median(ratios):.3f} [95 % CI {ci[0]:.3f}, {ci[1]:.3f}] (goal ≤ {PLAIN_GOAL:.2f}: {verdict})")
    return {"params": n_zoo, "batch": batch, "seq": ZOO_SIZE["n_ctx"], "steps": steps,
            "zoo_pre_ln_ms": tz * 1e3, "plain_gpt_ms": tp * 1e3, "ratio": tz / tp,
            "zoo_pre_ln_cpu_ms": statistics.median(cpu[zoo]) * 1e3,
            "plain_gpt_cpu_ms": statistics.median(cpu[plain]) * 1e3,
            "cpu_ratio_median": statistics.median(ratios), "cpu_ratio_ci95": ci,
            goal_key(PLAIN_GOAL): verdict, "cpu_ratios": [round(r, 6) for r in ratios]}


class OldTelemetry:
    """The per-parameter telemetry the zoo was trained with (one kernel chain and one sync per parameter)."""

    @staticmethod
    def install(tel) -> None:
        from interp.train.telemetry import group_of

        @torch.no_grad()
        def grad_norms():
            sq: dict = {}
            for n, p in tel.params:
                if p.grad is not None:
                    g = group_of(n)
                    sq[g] = sq.get(g, torch.zeros((), dtype=torch.float64)) + p.grad.double().pow(2).sum()
            total = sum(sq.values(), torch.zeros((), dtype=torch.float64))
            return float(total.sqrt()), {g: float(v.sqrt()) for g, v in sq.items()}

        @torch.no_grad()
        def before_update():
            tel._before = [p.detach().clone() for _, p in tel.params]

        @torch.no_grad()
        def update_ratios():
            du, w = {}, {}
            for (n, p), old in zip(tel.params, tel._before or []):
                g = group_of(n)
                du[g] = du.get(g, 0.0) + float((p.double() - old.double()).pow(2).sum())
                w[g] = w.get(g, 0.0) + float(old.double().pow(2).sum())
            tel._before = None
            ratio = {g: (du[g] / w[g]) ** 0.5 if w[g] > 0 else float("nan") for g in du}
            return (sum(du.values()) / max(sum(w.values()), 1e-30)) ** 0.5, ratio

        tel.grad_norms, tel.before_update, tel.update_ratios = grad_norms, before_update, update_ratios


def _zoo_trainer(strategy: str, variant: str, stamps: list):
    """The zoo runner's Trainer for `strategy` (seed 0, recipe and exceptions as trained) on random tokens."""
    import interp
    from interp.data import TokenBatches
    from interp.train import Trainer
    from interp.train.zoo import ZOO_SIZE, _loss_fn, exception_config, zoo_norm_kwargs, zoo_train_config
    cfg, exc = exception_config(strategy, zoo_train_config())
    nk = zoo_norm_kwargs(strategy, cfg.steps, cfg.warmup)
    model = interp.zoo.build(strategy, seed=0, **ZOO_SIZE, **((exc or {}).get("model_kwargs") or {}),
                             **({"norm_kwargs": nk} if nk else {}))
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(1, ZOO_SIZE["d_vocab"], (400_000,), generator=g)
    train = TokenBatches(stream[:300_000], cfg.seq_len, cfg.batch_size, 0, seed=0)
    val = TokenBatches(stream[300_000:], cfg.seq_len, cfg.batch_size, 0, shuffle=False)
    stamp = lambda tr: stamps.append((tr.step, time.perf_counter(), time.process_time()))
    new = variant == "new"
    tr = Trainer(model, train, cfg, val=val, progress=False, loss_fn=_loss_fn(model), callbacks=[stamp],
                 fused=new, compile=new)
    if not new:
        OldTelemetry.install(tr.tel)
    return tr


def _spread(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "iqr": q[2] - q[0]}


def per_strategy(strategy: str, repeats: int, chunk: int, warm: int = 3) -> dict:
    import tempfile
    from pathlib import Path
    torch._dynamo.reset()   # as in the zoo runner's fresh process per job: no recompile limit from earlier models
    stamps = {v: [] for v in ("old", "new")}
    trs = {v: _zoo_trainer(strategy, v, stamps[v]) for v in ("old", "new")}
    first_cpu = {}
    for v, tr in trs.items():   # warm-up (includes the step-0 eval, and compilation for "new")
        c0 = time.process_time()
        tr.run(until=warm)
        first_cpu[v] = time.process_time() - c0
    per = {v: {"ms": [], "cpu_s": []} for v in trs}
    for r in range(repeats):
        for v in (("old", "new") if r % 2 == 0 else ("new", "old")):
            tr, st = trs[v], stamps[v]
            st.clear()
            tr.run(until=tr.step + chunk + 1)
            wall = [b[1] - a[1] for a, b in zip(st, st[1:])]
            cpu = [b[2] - a[2] for a, b in zip(st, st[1:])]
            per[v]["ms"].append(statistics.median(wall) * 1e3)
            per[v]["cpu_s"].append(statistics.median(cpu))
    row = {"compiled": bool(trs["new"].train_loss.compiled)}
    for v in trs:
        row[f"{v}_ms"] = _spread(per[v]["ms"])
        row[f"{v}_cpu_s"] = _spread(per[v]["cpu_s"])
    ratios = [a / b for a, b in zip(per["old"]["cpu_s"], per["new"]["cpu_s"])]
    row["cpu_speedup"] = _spread(ratios)
    for v, tr in trs.items():
        step_cpu = row[f"{v}_cpu_s"]["median"]
        c0 = time.process_time()
        tr.evaluate()
        ev = time.process_time() - c0
        with tempfile.TemporaryDirectory() as d:
            tr.run_dir = Path(d)
            n = max(1, len(tr.rows))
            tr.rows, tr.layer_rows = tr.rows * (1000 // n), tr.layer_rows * (1000 // n)
            c0 = time.process_time()
            tr.save()
            sv = time.process_time() - c0
            tr.run_dir = None
        compile_s = max(0.0, first_cpu[v] - warm * step_cpu - ev)   # the step-0 eval ran in the warm-up
        row[f"{v}_eval_cpu_s"], row[f"{v}_save_cpu_s"] = ev, sv
        if v == "new":
            row["compile_cpu_s"] = compile_s
        row[f"{v}_projected_job_cpu_s"] = (2000 * step_cpu + 6 * ev + 9 * sv + (compile_s if v == "new" else 0.0))
    print(f"{strategy:<16} old {row['old_ms']['median']:6.1f} ms {row['old_cpu_s']['median'] * 1e3:6.1f} CPU ms | "
          f"new {row['new_ms']['median']:6.1f} ms {row['new_cpu_s']['median'] * 1e3:6.1f} CPU ms "
          f"(compiled {row['compiled']}, compile {row.get('compile_cpu_s', 0):.0f} CPU s) | "
          f"speedup {row['cpu_speedup']['median']:.2f} | job {row['old_projected_job_cpu_s']:.0f} -> "
          f"{row['new_projected_job_cpu_s']:.0f} CPU s", flush=True)
    return row


MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::dot", "aten::mv", "aten::addmv"}
COPIES = {"aten::copy_", "aten::cat", "aten::fill_", "aten::zero_", "aten::clone", "aten::index_put_"}


def category(op: str) -> str:
    """The part of a training step a profiled op belongs to (self CPU time is summed per part)."""
    if op in MATMUL:
        return "matrix products"
    if op.startswith("aten::_scaled_dot_product"):
        return "attention (SDPA)"
    if op.startswith("## Call CompiledFxGraph"):
        return "compiled element-wise code"
    if "adamw" in op.lower() or op.startswith("Optimizer."):
        return "optimizer"
    if op in COPIES:
        return "copies and fills"
    return "other (dispatch, autograd, telemetry)"


def breakdown(strategy: str, steps: int) -> dict:
    """Where one step of the zoo runner's (new) step goes: self CPU ms per step of each part (torch.profiler over
    `steps` steps after warm-up), the unprofiled step beside it, and the zoo's floor: the CPU hours the shipped
    plan (data/zoo/manifest.json: every model's steps) would take if a step cost only its matrix products and
    attention as measured here, everything else free."""
    import json

    from torch.profiler import ProfilerActivity, profile

    from interp.train.zoo import ZOO_DIR
    torch._dynamo.reset()
    stamps: list = []
    tr = _zoo_trainer(strategy, "new", stamps)
    tr.run(until=4)                                   # step-0 eval and compilation
    stamps.clear()
    tr.run(until=tr.step + steps + 1)
    plain_ms = statistics.median(b[2] - a[2] for a, b in zip(stamps, stamps[1:])) * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tr.run(until=tr.step + steps)
    parts: dict[str, float] = {}
    for e in prof.key_averages():
        parts[category(e.key)] = parts.get(category(e.key), 0.0) + e.self_cpu_time_total / 1e3 / steps
    total = sum(parts.values())
    floor_ms = parts.get("matrix products", 0.0) + parts.get("attention (SDPA)", 0.0)
    models = json.loads((ZOO_DIR / "manifest.json").read_text())["models"]
    n_steps = sum(int(r.get("steps") or 0) for r in models.values())
    out = {"strategy": strategy, "steps_profiled": steps, "step_cpu_ms_unprofiled": plain_ms,
           "step_cpu_ms_profiled": total,
           "parts_cpu_ms_per_step": {k: round(v, 3) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
           "parts_share": {k: round(v / total, 4) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
           "floor_ms_per_step": floor_ms, "floor_share_of_step": floor_ms / plain_ms,
           "plan_models": len(models), "plan_steps": n_steps,
           "plan_floor_cpu_h": n_steps * floor_ms / 1e3 / 3600,
           "note": "floor: every step of the shipped plan at this strategy's matrix-product and attention time, all "
                   "other work free (a lower bound: MDLM's bidirectional attention and the extra norms of other "
                   "strategies only add); profiling adds its own cost to the small ops, so the parts sum above "
                   "the unprofiled step; absolute times follow the machine's speed at the time of the run, "
                   "floor_share_of_step does not"}
    print(f"{strategy}: {plain_ms:.1f} CPU ms/step unprofiled; " + ", ".join(
        f"{k} {v:.1f}" for k, v in out["parts_cpu_ms_per_step"].items()) +
        f" ms; floor {floor_ms:.1f} ms/step -> {out['plan_floor_cpu_h']:.2f} CPU h for {len(models)} models "
        f"({n_steps} steps)", flush=True)
    return out


def projection(rows: dict) -> dict:
    """The zoo's CPU hours: each shipped model's recorded job CPU (data/zoo/manifest.json) and the same scaled by
    its strategy's measured speedup (strategies not measured: the median speedup of the measured ones; the LN
    removal jobs, which do not use the compiled step: unscaled), and from the measured steps alone."""
    import json

    from interp.train.zoo import ZOO_DIR
    m = json.loads((ZOO_DIR / "manifest.json").read_text())["models"]
    med = statistics.median(r["cpu_speedup"]["median"] for r in rows.values())
    rec = scaled = alone = 0.0
    n = {"causal_lm": 0, "mdlm": 0, "lnfree": 0}
    for r in m.values():
        cpu = r.get("job_cpu_s") or 0.0
        rec += cpu
        if "source" in r or r.get("steps") != 2000:   # LN removal and its controls (one job per seed)
            scaled += cpu
            alone += cpu
            n["lnfree"] += 1
            continue
        n[r.get("objective", "causal_lm")] += 1
        row = rows.get(r["strategy"])
        scaled += cpu / (row["cpu_speedup"]["median"] if row else med)
        alone += row["new_projected_job_cpu_s"] if row else cpu / med
    return {"models": n, "recorded_cpu_h": rec / 3600, "scaled_by_measured_speedup_cpu_h": scaled / 3600,
            "from_measured_steps_cpu_h": alone / 3600, "median_speedup_for_unmeasured": med,
            "note": "recorded: two jobs at once on the 2 cores; from_measured_steps: one job alone (unmeasured "
                    "strategies: recorded / median speedup; LN removal jobs as recorded)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--steps", type=int, default=20, help="plain_vs_zoo: steps per model")
    ap.add_argument("--batch", type=int, default=8, help="plain_vs_zoo: batch size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategies", default=None, help="comma-separated (default: every strategy of the zoo plan)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=6, help="steps per repeat and variant")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--update", action="store_true", help="keep the recorded rows of strategies not measured now")
    ap.add_argument("--breakdown-steps", type=int, default=10, help="steps profiled for the step's breakdown")
    a = ap.parse_args()
    import os
    import tempfile
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")   # compilation timed cold
    torch.set_num_threads(a.threads)
    from interp.train.zoo_runner import ZOO_SEEDS
    names = a.strategies.split(",") if a.strategies is not None else list(ZOO_SEEDS)
    rows = {s: per_strategy(s, a.repeats, a.chunk) for s in names if s}
    carried: dict = {}
    if a.update:
        import json

        from record import RESULTS
        prev = json.loads((RESULTS / "train_step.json").read_text())
        old = prev["results"].get("per_strategy", {})
        carried = {s: prev["results"].get("per_strategy_carried_over", {}).get(s, prev["date"])
                   for s in old if s not in rows}
        rows = {**old, **rows}
    out = {"repeats": a.repeats, "steps_per_repeat": a.chunk, "per_strategy": rows}
    if carried:
        out["per_strategy_carried_over"] = carried    # strategy -> date of the run that measured its row
    if rows:
        out["projection"] = projection(rows)
        print(out["projection"])
    out["breakdown"] = breakdown("pre-ln", a.breakdown_steps)
    if rows:  # the floor's share of the step applied to the projection (both at one machine speed)
        out["breakdown"]["plan_floor_cpu_h_at_projection_speed"] = (
            out["breakdown"]["floor_share_of_step"] * out["projection"]["from_measured_steps_cpu_h"])
    out["plain_vs_zoo"] = plain_vs_zoo(a.steps, a.batch)
    if a.no_write:
        return
    from record import write_result
    write_result("train_step", out, threads=a.threads, description=__doc__.split("\n\n")[0].replace("\n", " "))


if __name__ == "__main__":
    main()
