"""Skip-one-block losses and the massive-activation ablation: batched variants vs one forward per variant.

On the main job's held-out text (one passage for the skip losses, as its costly pass; every passage for the
ablation), per model, interleaved in one process:
  forward        one forward of the same tokens (the unit of the ratios)
  skip_direct    the intact forward + one full forward per skipped block (the implementation before batching)
  skip_batched   LayerEffect(skip=True): the intact forward + the skipped variants from their block on, batched;
                 their CE without logits (`interp.collectors.tail_loss`: the unembedding in tiles over every
                 variant's rows, a running log-sum-exp)
  skip_batched_logits  the same with the tail as the model runs it (each variant's logits, then their CE):
                 `tail_loss.FUSED = False`, the implementation before the fused tail
  ablate_direct  one full forward per mode (none / zero / mean), the implementation before batching
  ablate_batched MassiveActivations.ablation: the intact forward + the two edited variants from the depth on
  ablate_batched_logits  the same with each variant's logits (`tail_loss.FUSED = False`)
  skip_estimate  skip_first_order: the first-order estimate of every block's skip loss, one forward + one
                 backward along the stream only (weights frozen)
  skip_estimate_collect  the same estimate as the SkipAttribution collector in interp.collect (the backward
                 also computes the weight gradients, which GradNorms shares)
  ablate_estimate MassiveAttribution: the first-order estimate of the zero / mean ablation, forward + backward
  forward_ablation_texts  one forward of the ablation's tokens (the unit of the ablation ratios "/ same tokens")
The fused tail is compared with the logits path, and both with float64 (the CE of one skipped variant from its
final stream, computed in float64): `fused_vs_float64_max_abs` and `logits_vs_float64_max_abs`, nats per token.
Both exact forms' results are compared (max relative difference of the losses) in the same run, and the
estimates are compared with the exact values (mean / max absolute error in nats per token, Spearman's ρ).
The forward is also split by CPU time into embedding, blocks and tail (final norm, unembedding, loss), which
gives the lower bound of any exact skip-one-block method: 1 + (L − 1)/2 · blocks share + L · tail share
forwards (the intact forward, Σ_ℓ (L − 1 − ℓ) block forwards, one tail per skipped block).
Results keep one row per model and CPU (`--merge` keeps the other rows of the file).
Run: .venv/bin/python benchmarks/skip_ablation.py [--models smollm2-135m,gemma-3-270m] [--repeats 5] [--no-direct] [--merge]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def skip_direct(model, tokens, am):
    """Skip-one-block losses with one full forward per block (hooks keep resid_pre, replace resid_post)."""
    from interp.collectors.objective import loss_terms
    out = []
    with __import__("torch").no_grad():
        model(tokens, attention_mask=am)
        for ls in model.sites.layers:
            saved: dict = {}
            with model.hooks(fwd_hooks=[(ls.resid_pre, lambda x, hook, s=saved: s.__setitem__("x", x)),
                                        (ls.resid_post, lambda x, hook, s=saved: s["x"])]):
                o = model(tokens, attention_mask=am)
            out.append(loss_terms(model, o, tokens, am).double().mean().item())
    return out


def ablate_direct(col, model, data, batch_size):
    """Massive ablation with one full forward per mode (the hook edits the stream inside it)."""
    from interp.collectors.driver import run_batches
    from interp.collectors.massive_ablation import _AblationRun
    depth, dims, mean = col.ablation_target()
    out = []
    for mode in ("none", "zero", "mean"):
        probe = _AblationRun(col, col.hooks_[depth], dims, mean, mode)
        run_batches(model, data, [probe], batch_size, progress=False)
        out.append(probe.loss_sum / probe.n)
    return out


def forward_split(model, tokens, am, repeats: int) -> dict:
    """CPU-time shares of one forward + loss: embedding (to the stream at depth 0), blocks (to depth L), tail
    (final norm, unembedding, next-token loss); medians over `repeats` runs."""
    import statistics
    import time

    import torch

    from interp.collectors.objective import loss_terms
    stream = model.sites.stream()
    marks: dict = {}
    hooks = [(stream[0], lambda x, hook: marks.__setitem__("a", time.process_time())),
             (stream[-1], lambda x, hook: marks.__setitem__("b", time.process_time()))]
    parts: dict = {"embed": [], "blocks": [], "tail": []}
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for _ in range(repeats + 1):
            t0 = time.process_time()
            loss_terms(model, model(tokens, attention_mask=am), tokens, am).sum()
            t1 = time.process_time()
            for k, v in (("embed", marks["a"] - t0), ("blocks", marks["b"] - marks["a"]), ("tail", t1 - marks["b"])):
                parts[k].append(v / (t1 - t0))
    share = {k: statistics.median(v[1:]) for k, v in parts.items()}  # the first run warms up
    L = model.sites.n_layers
    return {"embed_share": share["embed"], "blocks_share": share["blocks"], "tail_share": share["tail"],
            "exact_skip_lower_bound": 1 + (L - 1) / 2 * share["blocks"] + L * share["tail"]}


def rel(a, b) -> float:
    """Largest relative difference of two columns."""
    a, b = a.to_numpy(), b.to_numpy()
    return float(abs(a - b).max() / abs(b).max())


def tail_vs_float64(model, tokens, am) -> dict:
    """Per-token CE of the variant 'block 0 skipped', fused and from the logits, each against float64."""
    import torch
    import torch.nn.functional as F

    import interp.collectors.tail_loss as TL
    from interp.collectors.objective import loss_terms
    from interp.collectors.variants import run_variants
    kept: dict = {}
    with torch.no_grad():
        model.run_with_hooks(tokens, attention_mask=am,
                             fwd_hooks=[(model.sites.stream()[0], lambda x, hook: kept.__setitem__("x", x))])
    variant = [(1, kept["x"])]
    u = TL.unembedding(model)
    final: dict = {}
    h = u.register_forward_pre_hook(lambda m, a: final.__setitem__("h", a[0]))
    try:
        logits_ce = loss_terms(model, run_variants(model, tokens, am, variant)[0], tokens, am).double()
    finally:
        h.remove()
    fused_ce = TL.variant_ce(model, tokens, am, variant)[0].double()
    with torch.no_grad():
        lg = TL._tail(F.linear(final["h"][0, :-1].double(), u.weight.double(),
                               None if u.bias is None else u.bias.double()), *TL._tail_of(model))
        ref = F.cross_entropy(lg, tokens[0, 1:], reduction="none")
    return {"fused_vs_float64_max_abs": float((fused_ce - ref).abs().max()),
            "logits_vs_float64_max_abs": float((logits_ce - ref).abs().max())}


def measure(name: str, texts: list[str], repeats: int, direct: bool = True) -> dict:
    """Every candidate on model `name`, interleaved; ratios, speed-ups and the agreement of both forms."""
    import numpy as np
    import torch
    from timing import interleaved, load_info, summary

    import interp
    import interp.collectors.tail_loss as TL
    from interp.collectors import LayerEffect, MassiveActivations, collect
    from interp.collectors.driver import run_batches
    from interp.collectors.attribution_patching import (MassiveAttribution, SkipAttribution, agreement,
                                                        beside_exact, skip_first_order)
    model = interp.load_model(name).eval()
    tok = model.tokenizer
    seq = ([tok.bos_id] if tok.add_bos and tok.bos_id is not None else []) + list(tok.encode(texts[0]))
    tokens = torch.tensor([seq])
    am = torch.ones_like(tokens, dtype=torch.bool)
    col = MassiveActivations()
    collect(model, texts, [col], batch_size=4, progress=False)
    res: dict = {}

    def fwd():
        with torch.no_grad():
            model(tokens, attention_mask=am)

    def skip_b():
        res["skip_b"] = collect(model, (tokens, am), [LayerEffect(skip=True)], progress=False)["layer_skip"]

    def abl_b():
        res["abl_b"] = col.ablation(model, texts, batch_size=4)

    def logits_path(f, key):
        """f with the fused tail off; its result under `key`, the fused run's result (under key less "_l") kept."""
        def run():
            base = key.removesuffix("_l")
            kept, TL.FUSED = res.get(base), False
            try:
                f()
                res[key] = res[base]
            finally:
                TL.FUSED = True
                if kept is not None:
                    res[base] = kept
        return run

    def skip_e():
        res["skip_e"] = skip_first_order(model, (tokens, am))

    def skip_ec():
        res["skip_ec"] = collect(model, (tokens, am), [SkipAttribution()], progress=False)["skip_attribution"]

    def abl_e():
        res["abl_e"] = collect(model, texts, [MassiveAttribution(col)], batch_size=4,
                               progress=False)["massive_attribution"]

    def fwd_texts():
        run_batches(model, texts, [], 4, progress=False)

    fns = {"forward": fwd, "skip_batched": skip_b, "skip_batched_logits": logits_path(skip_b, "skip_b_l"),
           "skip_estimate": skip_e, "ablate_batched_logits": logits_path(abl_b, "abl_b_l"),
           "skip_estimate_collect": skip_ec, "ablate_batched": abl_b,
           "ablate_estimate": abl_e, "forward_ablation_texts": fwd_texts}
    if direct:
        fns["skip_direct"] = lambda: res.__setitem__("skip_d", skip_direct(model, tokens, am))
        fns["ablate_direct"] = lambda: res.__setitem__("abl_d", ablate_direct(col, model, texts, 4))
    before = load_info()
    split = forward_split(model, tokens, am, repeats)
    t = interleaved(fns, repeats, baseline="forward")
    cpu, rc = t["cpu_s"], t["ratio_cpu"]
    same = lambda k: summary([a / b for a, b in zip(cpu[k]["samples"], cpu["forward_ablation_texts"]["samples"])])
    skip_tab = beside_exact(res["skip_e"], res["skip_b"])
    abl_tab = beside_exact(res["abl_e"], res["abl_b"])
    sk_a, ab_a = agreement(skip_tab), agreement(abl_tab)  # ablation: two rows, no rank correlation
    row = {  # snake_case keys: docs quote them (docs/numbers_from_json.py)
        "n_layers": model.sites.n_layers, "skip_tokens": int(tokens.numel()),
        "ablation_tokens": int(sum(len(tok.encode(x)) for x in texts)),
        "skip_batched_ratio_cpu_median": rc["skip_batched"]["median"],
        "skip_batched_ratio_cpu_iqr": rc["skip_batched"]["iqr"],
        "skip_batched_logits_ratio_cpu_median": rc["skip_batched_logits"]["median"],
        "skip_fused_speedup_cpu_median": cpu["skip_batched_logits"]["median"] / cpu["skip_batched"]["median"],
        "ablate_fused_speedup_cpu_median": cpu["ablate_batched_logits"]["median"] / cpu["ablate_batched"]["median"],
        "skip_fused_vs_logits_max_rel_diff": rel(res["skip_b"]["skipped"], res["skip_b_l"]["skipped"]),
        "ablation_fused_vs_logits_max_rel_diff": rel(res["abl_b"]["loss"], res["abl_b_l"]["loss"]),
        **tail_vs_float64(model, tokens, am),
        "skip_estimate_ratio_cpu_median": rc["skip_estimate"]["median"],
        "skip_estimate_ratio_cpu_iqr": rc["skip_estimate"]["iqr"],
        "skip_estimate_collect_ratio_cpu_median": rc["skip_estimate_collect"]["median"],
        "skip_estimate_collect_ratio_cpu_iqr": rc["skip_estimate_collect"]["iqr"],
        **split,
        "skip_estimate_mean_abs_error": sk_a["mean_abs_error"],
        "skip_estimate_max_abs_error": sk_a["max_abs_error"],
        "skip_estimate_spearman": sk_a["spearman"],
        "skip_exact_mean_increase": float(skip_tab["increase"].mean()),
        "skip_estimate_mean_increase": float(skip_tab["increase_first_order"].mean()),
        "skip_most_harmful_block_exact": int(skip_tab["increase"].idxmax()),
        "skip_most_harmful_block_estimate": int(skip_tab["increase_first_order"].idxmax()),
        "skip_estimate_paths_max_abs_diff": float((res["skip_e"]["increase_first_order"]
                                                   - res["skip_ec"]["increase_first_order"]).abs().max()),
        "ablate_batched_ratio_same_tokens_cpu_median": same("ablate_batched")["median"],
        "ablate_estimate_ratio_same_tokens_cpu_median": same("ablate_estimate")["median"],
        "ablate_batched_ratio_cpu_median": rc["ablate_batched"]["median"],
        "ablate_estimate_ratio_cpu_median": rc["ablate_estimate"]["median"],
        **{f"ablation_{m}_{k}": float(v) for m, r in abl_tab.set_index("intervention").iterrows()
           for k, v in (("exact", r["loss_delta"]), ("estimate", r["loss_delta_first_order"]))},
        "ablation_estimate_mean_abs_error": ab_a["mean_abs_error"],
    }
    if direct:
        sk, ab = np.array(res["skip_d"]), np.array(res["abl_d"])
        row.update({
            "skip_direct/forward (cpu, median)": rc["skip_direct"]["median"],
            "skip speed-up (cpu, median)": cpu["skip_direct"]["median"] / cpu["skip_batched"]["median"],
            "ablate_direct/forward (cpu, median)": rc["ablate_direct"]["median"],
            "ablation speed-up (cpu, median)": cpu["ablate_direct"]["median"] / cpu["ablate_batched"]["median"],
            "skip max rel diff": float(np.max(np.abs(res["skip_b"]["skipped"].to_numpy() - sk) / np.abs(sk))),
            "ablation max rel diff": float(np.max(np.abs(res["abl_b"]["loss"].to_numpy() - ab) / np.abs(ab)))})
    return {**row, "timing": t, "load_before": before, "load_after": load_info()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-direct", action="store_true",
                    help="leave out the one-forward-per-variant forms (the slowest candidates)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows already in benchmarks/results/skip_ablation.json of other models or other "
                         "CPUs (each row records its CPU, date and the command that measured it)")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from record import command_line, machine_name, recorded_rows, row_key, utc_now, write_result

    import interp.data
    texts = interp.data.heldout_texts(8, 600)  # the main job's sample for real models
    here = machine_name()
    rows = recorded_rows("skip_ablation") if a.merge else {}
    for name in a.models.split(","):
        row = {"model": name, "machine": here, "date": utc_now(),
               **measure(name, texts, a.repeats, direct=not a.no_direct),
               "command": command_line()}
        rows[row_key(name, here)] = row
        print(name, {k: v for k, v in row.items() if k != "timing"}, flush=True)
        if not a.no_write:  # after each model: a long run interrupted later keeps what it measured
            print(write_result("skip_ablation", rows, threads=a.threads, description=__doc__.split("\n")[0]))


if __name__ == "__main__":
    main()
