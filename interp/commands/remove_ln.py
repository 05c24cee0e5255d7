"""`interp remove-ln`: remove every LayerNorm of a Pre-LN zoo checkpoint or GPT-2 by staged fine-tuning (LN-free GPT-2)."""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path


def load_removable(name: str):
    """A zoo checkpoint as is; a GPT-2 (name, HF cache id or checkpoint directory) converted to its zoo equal."""
    from interp.models import load_model
    from interp.surgery import from_gpt2
    from interp.zoo import ZooModel
    model = load_model(name)
    if isinstance(model, ZooModel):
        return model
    if getattr(model, "family", None) == "gpt2":
        return from_gpt2(model)
    raise ValueError(f"{name}: LN removal works on Pre-LN zoo checkpoints and GPT-2; got a {model.card.family} model")


def corpus_tokens(tok, corpus: str, n_eval: int, seq: int):
    """(training stream, held-out windows [n_eval, seq]) of `corpus` in tokenizer `tok`, split by book."""
    from interp.data import TokenBatches, encode_corpus, load_corpus, split_by_book
    import torch
    train, val = split_by_book(load_corpus(corpus))
    b = TokenBatches(encode_corpus(val, tok), seq - 1, n_eval, tok.bos_id, shuffle=False).first(1)[0]
    return encode_corpus(train, tok), torch.cat([b.x, b.y[:, -1:]], 1)


def run(args: argparse.Namespace) -> None:
    from interp.commands._check import apart, at_least, dir_target, local_model, positive_finite
    from interp.outputs import atomic_write_bytes, install_dir, json_safe, temp_dir
    at_least(args, steps_per_stage=1, batch_size=1, eval_seqs=1, threads=1, seq_len=2, seed=0)
    positive_finite(args, "lr")
    out = Path(args.out)
    apart(args.out, args.model)
    dir_target(out, "checkpoint", args.force)  # before any work
    local_model(args.model)
    import torch  # the checks above need none of these (a mistyped option or path fails in a moment)

    from interp import data
    from interp.surgery import remove_layernorm
    from interp.surgery.remove_ln import check_removable
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_removable(args.model)
    check_removable(model)
    t0 = time.time()
    seq = min(model.cfg.n_ctx, args.seq_len or model.cfg.n_ctx) + 1
    tok = getattr(model, "tokenizer", None)
    if tok is not None:  # the model's own (GPT-2's BPE, which load_model requires; a zoo checkpoint's tokenizer.json)
        train_tokens, eval_tokens = corpus_tokens(tok, args.corpus, args.eval_seqs, seq)
    else:  # a zoo checkpoint saved without a tokenizer: the zoo's corpus tokenizer
        train_tokens = data.prepare(args.corpus).train_tokens
        eval_tokens = data.heldout_tokens(args.eval_seqs, seq, corpus=args.corpus)
    r = remove_layernorm(model, train_tokens, eval_tokens, steps_per_stage=args.steps_per_stage,
                         batch_size=args.batch_size, lr=args.lr, control=args.control, seed=args.seed)
    weights = Path(args.model) / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None
    report = dict(source=str(args.model), source_sha256=sha, ce=r.ce, stages=r.stages.to_dict("records"),
                  steps_per_stage=args.steps_per_stage, batch_size=args.batch_size, lr=args.lr, control=args.control,
                  corpus=args.corpus, seed=args.seed,
                  eval_tokens=int(eval_tokens[:, 1:].numel()), threads=args.threads, wall_s=round(time.time() - t0, 1),
                  paper_gpt2_small=dict(vanilla=3.0126, lnfree=3.0797, lnfree_minus_vanilla=0.0671))
    # the checkpoint and removal.json go into one temp folder, swapped in together (never one without the other)
    tmp = temp_dir(out)
    try:
        r.model.save(tmp)
        atomic_write_bytes(tmp / "removal.json", json.dumps(json_safe(report), indent=2, allow_nan=False).encode())
        install_dir(tmp, out, "checkpoint", force=args.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temp folder
        raise
    print(r.stages.to_string(index=False))
    print(" ".join(f"{k}={v:.4f}" for k, v in r.ce.items()))
    print(f"wrote {out} (LN-free zoo checkpoint + removal.json) in {report['wall_s']} s")


def register(sub) -> None:
    p = sub.add_parser("remove-ln", help="remove LayerNorm from a Pre-LN zoo model or GPT-2 by staged fine-tuning",
                       description="FakeLN stages ln2 -> ln1 Q/K -> ln1 V -> ln_final -> position-0 divisor, each "
                                   "followed by fine-tuning; reports CE before, after a vanilla fine-tune of equal "
                                   "length, and LN-free; saves the LN-free model as a no-norm zoo checkpoint.")
    p.add_argument("model", help="a Pre-LN zoo checkpoint directory (e.g. data/zoo/pre-ln), or GPT-2: 'gpt2' or a "
                                 "GPT-2 checkpoint directory (converted to its equal zoo model first)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per window (default and maximum: the context)")
    p.add_argument("--out", required=True, help="directory for the LN-free checkpoint and removal.json (new, "
                                               "empty, or an earlier checkpoint with --force)")
    p.add_argument("--force", action="store_true", help="replace an earlier zoo checkpoint at --out")
    p.add_argument("--steps-per-stage", type=int, default=40, help="fine-tuning steps after each stage (default 40)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="peak fine-tuning learning rate (default 1e-3)")
    p.add_argument("--corpus", default="kjv", help="training / held-out corpus (default kjv)")
    p.add_argument("--eval-seqs", type=int, default=16, help="held-out windows for CE (default 16)")
    p.add_argument("--control", choices=("matched", "single"), default="matched",
                   help="vanilla control: the same fine-tuning calls with LN kept (default), or one run of equal length")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the calibration windows and the fine-tuning shuffles (default 0)")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=run)
