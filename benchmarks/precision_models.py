"""Precision verdicts of the real models and the whole shipped zoo: benchmarks/results/precision_models.json.

Per model (interp.precision.check): the largest |x| over every residual site and where, fp16 headroom, whether
the fp16 run stays finite (and where it overflows first), the loss change in bf16 / fp16 / int8 against fp32
on the same tokens, the worst int8 per-tensor token error, LLM.int8() outlier features, and what each step cost.
Site statistics: 16 × 128 held-out tokens (zoo) or 8 passages of ~600 characters (real models); end-to-end
runs on the first --run-tokens of them. `results` maps each model's name to its record, so the docs quote a
model by name (docs/numbers_from_json.py), whatever the zoo holds when this runs.
`--keep NAMES` copies those models' records unchanged from the existing JSON instead of measuring them again (each
then carries `carried_over`: the date of the run that measured it), so a run restricted to fewer models keeps the
others' numbers with their provenance; `--zoo none` skips the zoo.
Run: .venv/bin/python benchmarks/precision_models.py [--zoo data/zoo] [--real smollm2-135m,gemma-3-270m,...]
     [--keep gemma-3-270m,...]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REAL = "smollm2-135m,gemma-3-270m,qwen2.5-0.5b,mpnet-base,minilm-l6"


def row(model, data, run_tokens: int) -> dict:
    """One flat record for `model` on `data`."""
    import math

    from interp.precision.check import check
    t = time.perf_counter()
    chk = check(model, data, batch_size=4, run_tokens=run_tokens)
    total = time.perf_counter() - t
    v = chk.verdict.iloc[0].to_dict()
    runs = chk.runs.set_index("format")
    out = {k: (float(x) if isinstance(x, float) else x) for k, x in v.items()}
    out = {k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in out.items()}
    out.update(placement=model.card.placement, norm=model.card.norm_kind,
               n_tokens_sites=int(chk.sites["n_tokens"].max()), n_tokens_runs=int(runs["n_tokens"].iloc[0]),
               seconds_total=total, seconds_fp32=float(runs["seconds_fp32"].iloc[0]))
    for f in runs.index:
        out[f"seconds_{f}"] = float(runs.loc[f, "seconds"])
        out[f"status_{f}"] = str(runs.loc[f, "status"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", default=None, help="zoo directory (default: data/zoo; 'none': no zoo model)")
    ap.add_argument("--real", default=REAL, help="comma-separated registry names ('' for none)")
    ap.add_argument("--run-tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", default="", help="comma-separated models whose records are copied from the existing "
                    "JSON (not measured again)")
    a = ap.parse_args()
    keep = [k for k in a.keep.split(",") if k]
    kept = {}
    if keep:
        from record import RESULTS
        old = RESULTS / "precision_models.json"
        prev = json.loads(old.read_text()) if old.is_file() else {"results": {}}
        missing = [k for k in keep if k not in prev["results"]]
        if missing:
            raise SystemExit(f"--keep {','.join(missing)}: not in {old}")
        kept = {k: {**prev["results"][k], "carried_over": prev["results"][k].get("carried_over") or prev["date"]}
                for k in keep}
    import torch

    import interp
    import interp.data
    from interp.report.main_job import zoo_dirs
    torch.set_num_threads(a.threads)
    rows = []
    zoo_dir = Path(a.zoo) if a.zoo else interp.data.DATA_DIR / "zoo"
    tokens = interp.data.heldout_tokens(16, 128)
    for d in ([] if a.zoo == "none" else zoo_dirs(zoo_dir)):
        if d.name in kept:
            continue
        rows.append(row(interp.zoo.load(d).eval(), tokens, a.run_tokens))
        print(rows[-1]["model"], rows[-1]["fp16_headroom"], rows[-1]["delta_int8"], flush=True)
    texts = interp.data.heldout_texts(8, 600)
    for name in filter(None, a.real.split(",")):
        if name in kept:
            continue
        try:
            model = interp.load_model(name).eval()
        except (FileNotFoundError, ImportError, ValueError, RuntimeError, OSError) as e:
            print(f"{name}: not loaded ({str(e).splitlines()[0]})")
            continue
        rows.append(row(model, texts, a.run_tokens // 2))
        print(rows[-1]["model"], rows[-1]["fp16_headroom"], rows[-1]["fp16_overflow_at"], flush=True)
        del model
    from record import write_result
    results = {r["model"]: {**r, "carried_over": None} for r in rows} | kept
    print(write_result("precision_models", results, threads=a.threads, description=(
        "precision verdict per model (interp.precision.check): max |x| over every residual site, fp16 headroom, "
        "fp16 run finite or where it overflows first, loss change in bf16 / fp16 / int8 vs fp32 on the same tokens "
        "(nats; encoders: relative error of the hidden states), seconds per step" +
        (f"; {', '.join(kept)} not measured again in this run: their records are copied from the run dated "
         "in their carried_over field" if kept else ""))))


if __name__ == "__main__":
    main()
