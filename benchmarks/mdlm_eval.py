"""The masked-diffusion zoo on held-out text: MDLM bound vs t, NELBO, conditioning parameters, time dependence.

    .venv/bin/python benchmarks/mdlm_eval.py [--zoo data/zoo] [--seqs 64] [--draws 4] [--name mdlm]

For every data/zoo/mdlm-* checkpoint: the bound (nats per scored token, `interp.train.mdlm.mdlm_eval`) at
t = 0.05, 0.15, ..., 0.95 (their mean: the midpoint-rule NELBO) and at t = 1, on the first `--seqs` windows of
the validation books, averaged over `--draws` mask draws; KL(unigram ‖ prediction) with every token masked (t = 1, mean over positions); parameter
and conditioning-parameter counts (`interp.zoo.conditioning`); how far its norms move over t (mean gamma_range
of `interp.diffusion.norm_motion`); training wall time from the manifest. Per strategy: NELBO mean with a 95 %
t interval over seeds; mdlm-tdln − mdlm-adaln and mdlm-ln − mdlm-adaln with Welch intervals. Writes
benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from record import write_result

from interp import data, zoo
from interp.analysis.intervals import diff_over_seeds, over_seeds
from interp.analysis.subjects import group_of, seed_of
from interp.data.batches import Batch
from interp.diffusion import norm_motion, norm_params_over_t
from interp.train.mdlm import mdlm_eval
from interp.zoo.conditioning import conditioning_parameters


def all_masked_kl(model, unigram: torch.Tensor, bos_id: int) -> float:
    """Mean over positions 1..T−1 of KL(unigram ‖ p_θ(· | [BOS, MASK, …], t = 1)) in nats."""
    z = torch.full((1, model.cfg.n_ctx), model.cfg.mask_id)
    z[0, 0] = bos_id
    with torch.no_grad():
        logq = model(z, cond=torch.ones(1))[0, 1:].double().log_softmax(-1)
    p = unigram.double()
    return float((p * (p.clamp(min=1e-300).log() - logq)).sum(-1).mean())


def _est(e) -> dict:
    """An Estimate as JSON (no interval: lo = hi = null)."""
    def fin(v: float) -> float | None:
        return v if math.isfinite(v) else None
    return {"value": fin(e.value), "lo": fin(e.lo), "hi": fin(e.hi), "method": e.method, "n": e.n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", default="data/zoo")
    ap.add_argument("--seqs", type=int, default=64)
    ap.add_argument("--name", default="mdlm")
    ap.add_argument("--draws", type=int, default=4, help="mask draws per sequence and t")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(args.zoo)
    dirs = sorted(d for d in root.glob("mdlm-*") if (d / "model.safetensors").is_file())
    if not dirs:
        raise SystemExit(f"no MDLM checkpoints (mdlm-*) in {root}: train them first (interp train --zoo)")
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    prepared = data.prepare("kjv", data.TOKENIZER_PATH)
    counts = torch.bincount(prepared.train_tokens, minlength=prepared.tokenizer.vocab_size).double()
    tokens = data.heldout_tokens(args.seqs, 128)
    batches = [Batch(tokens[i:i + 8], tokens[i:i + 8], torch.zeros(len(tokens[i:i + 8])))
               for i in range(0, len(tokens), 8)]
    models = {}
    for d in dirs:
        model = zoo.load(d).eval()
        ev = mdlm_eval(model, batches, n_t=10, extra_t=(1.0,), n_draws=args.draws)
        motion = norm_motion(norm_params_over_t(model))
        rec = manifest.get("models", {}).get(d.name, {})
        models[d.name] = {
            "strategy": group_of(d.name), "seed": seed_of(d.name),
            "n_params": sum(p.numel() for p in model.parameters()),
            "cond_params": conditioning_parameters(model)["total"],
            "nelbo": ev.nelbo, "nelbo_sem": ev.nelbo_sem,
            "bound_at_t": {f"{r.t:g}": r.bound for r in ev.per_t.itertuples()},
            "kl_unigram_t1": all_masked_kl(model, counts / counts.sum(), prepared.tokenizer.bos_id),
            "norm_gamma_range_mean": float(motion["gamma_range"].mean()) if len(motion) else 0.0,
            "norm_beta_range_mean": float(motion["beta_range"].mean()) if len(motion) else 0.0,
            "final_val_loss": rec.get("final_val_loss"), "train_wall_s": rec.get("train_wall_s"),
            "steps": rec.get("steps")}
        print(f"{d.name:<18} NELBO {ev.nelbo:.4f} ± {ev.nelbo_sem:.4f}  KL(t=1) {models[d.name]['kl_unigram_t1']:.3f}",
              flush=True)
    by = {}
    for r in models.values():
        by.setdefault(r["strategy"], []).append(r["nelbo"])
    strategies = {s: {"seeds": len(v), "nelbo": _est(over_seeds(v)),
                      "cond_params": next(r["cond_params"] for r in models.values() if r["strategy"] == s)}
                  for s, v in by.items()}
    diffs = {f"{a} - mdlm-adaln": _est(diff_over_seeds(by[a], by["mdlm-adaln"]))
             for a in ("mdlm-tdln", "mdlm-ln") if a in by and "mdlm-adaln" in by}
    path = write_result(args.name, {"models": models, "strategies": strategies, "differences": diffs,
                                    "held_out": {"sequences": len(tokens), "seq_len": tokens.shape[1]}},
                        threads=1, description=__doc__.split("\n\n")[0])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
