"""Skip-one-block losses and the massive-activation ablation: batched variants vs one forward per variant.

On the main job's held-out text (one passage for the skip losses, as its costly pass; every passage for the
ablation), per model, interleaved in one process:
  forward        one forward of the same tokens (the unit of the ratios)
  skip_direct    the intact forward + one full forward per skipped block (the implementation before batching)
  skip_batched   LayerEffect(skip=True): the intact forward + the skipped variants from their block on, batched
  ablate_direct  one full forward per mode (none / zero / mean), the implementation before batching
  ablate_batched MassiveActivations.ablation: the intact forward + the two edited variants from the depth on
Both forms' results are compared (max relative difference of the losses) in the same run.
Run: .venv/bin/python benchmarks/skip_ablation.py [--models smollm2-135m,gemma-3-270m] [--repeats 5]
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
    from interp.collectors.massive import _AblationRun
    depth, dims, mean = col.ablation_target()
    out = []
    for mode in ("none", "zero", "mean"):
        probe = _AblationRun(col, col.hooks_[depth], dims, mean, mode)
        run_batches(model, data, [probe], batch_size, progress=False)
        out.append(probe.loss_sum / probe.n)
    return out


def measure(name: str, texts: list[str], repeats: int) -> dict:
    """Every candidate on model `name`, interleaved; ratios, speed-ups and the agreement of both forms."""
    import numpy as np
    import torch
    from timing import interleaved, load_info

    import interp
    from interp.collectors import LayerEffect, MassiveActivations, collect
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

    fns = {"forward": fwd, "skip_direct": lambda: res.__setitem__("skip_d", skip_direct(model, tokens, am)),
           "skip_batched": skip_b,
           "ablate_direct": lambda: res.__setitem__("abl_d", ablate_direct(col, model, texts, 4)),
           "ablate_batched": abl_b}
    before = load_info()
    t = interleaved(fns, repeats, baseline="forward")
    sk, ab = np.array(res["skip_d"]), np.array(res["abl_d"])
    cpu = t["cpu_s"]
    return {
        "n_layers": model.sites.n_layers, "skip_tokens": int(tokens.numel()),
        "ablation_tokens": int(sum(len(tok.encode(x)) for x in texts)),
        "skip_batched/forward (cpu, median)": t["ratio_cpu"]["skip_batched"]["median"],
        "skip_direct/forward (cpu, median)": t["ratio_cpu"]["skip_direct"]["median"],
        "skip speed-up (cpu, median)": cpu["skip_direct"]["median"] / cpu["skip_batched"]["median"],
        "ablate_batched/forward (cpu, median)": t["ratio_cpu"]["ablate_batched"]["median"],
        "ablate_direct/forward (cpu, median)": t["ratio_cpu"]["ablate_direct"]["median"],
        "ablation speed-up (cpu, median)": cpu["ablate_direct"]["median"] / cpu["ablate_batched"]["median"],
        "skip max rel diff": float(np.max(np.abs(res["skip_b"]["skipped"].to_numpy() - sk) / np.abs(sk))),
        "ablation max rel diff": float(np.max(np.abs(res["abl_b"]["loss"].to_numpy() - ab) / np.abs(ab))),
        "timing": t, "load_before": before, "load_after": load_info()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,gemma-3-270m")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from record import write_result

    import interp.data
    texts = interp.data.heldout_texts(8, 600)  # the main job's sample for real models
    rows = {}
    for name in a.models.split(","):
        rows[name] = measure(name, texts, a.repeats)
        print(name, {k: v for k, v in rows[name].items() if k != "timing"}, flush=True)
    if not a.no_write:
        print(write_result("skip_ablation", rows, threads=a.threads, description=__doc__.split("\n")[0]))


if __name__ == "__main__":
    main()
