"""`interp precision MODEL`: will the model survive fp16, bf16 and int8? Prints its verdict table.

    interp precision smollm2-135m
    interp precision gemma-3-270m --formats fp16 --run-tokens 64
    interp precision data/zoo/pre-ln --data texts.txt --max-tokens 4096
    interp precision data/zoo/pre-ln --data austen --max-tokens 4096
    interp precision smollm2-135m -o runs/smollm2-precision && interp report runs/smollm2-precision -o r.html

Site statistics (max |x|, headroom, rounding and int8 errors at every residual site) come from one fp32 pass
of the Precision collector; the loss in bf16 / fp16 / int8 from end-to-end runs on the first --run-tokens
tokens (fp16 matrix products are slow on a CPU; see interp/precision/lowp.py). With -o, every table (site
statistics, outlier features, end-to-end runs) is saved as a results directory that `interp report` reads.
"""
from __future__ import annotations

import argparse
import math


def _is_corpus(data: str) -> bool:
    """Whether --data names a corpus for interp.data.load_corpus (as `interp collect --data` takes it): 'kjv',
    'austen', 'hf:NAME' or a folder of text files."""
    from pathlib import Path
    return data in ("kjv", "austen") or data.startswith("hf:") or Path(data).is_dir()


def _data_texts(data: str) -> list[str]:
    """The texts of --data when it is a text file: one per non-empty line."""
    from pathlib import Path
    p = Path(data)
    if not p.is_file():
        raise FileNotFoundError(f"--data {data}: no such text file (one text per line), and not a corpus "
                                "('kjv', 'austen', a folder, 'hf:NAME')")
    try:
        texts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"--data {data} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not texts:
        raise ValueError(f"--data {data} holds no text (every line is empty)")
    return texts


def _fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if v == math.inf else "—" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def print_check(chk) -> None:
    """The verdict (one line per field), then one line per end-to-end format."""
    v = chk.verdict.iloc[0]
    print(f"precision verdict for {v['model']}")
    for k, val in v.items():
        if k != "model":
            print(f"  {k:<22} {_fmt(val)}")
    if len(chk.runs):
        print("\nend-to-end runs (same tokens as fp32):")
        print(f"  {'format':<11} {'status':<9} {'loss':>8} {'Δloss':>9} {'top-1':>6} {'seconds':>8}  where / note")
        for r in chk.runs.itertuples():
            note = r.what or r.fp32_ops
            print(f"  {r.format:<11} {r.status:<9} {_fmt(r.loss):>8} {_fmt(r.delta_loss):>9} "
                  f"{_fmt(r.top1_agreement):>6} {r.seconds:>8.2f}  {note}")
        lm = chk.runs["metric"].iloc[0] == "next_token_ce"  # a failed run's row counts fewer tokens: the largest
        print(f"  fp32 reference: loss {_fmt(chk.runs['loss_fp32'].iloc[0])}, {chk.runs['seconds_fp32'].iloc[0]:.2f} s "
              f"on {int(chk.runs['n_tokens'].max())} {'predicted tokens' if lm else 'tokens'}")


def run(a: argparse.Namespace) -> None:
    from interp.commands._check import at_least, dir_target, local_model
    at_least(a, texts=1, chars=1, batch_size=1, max_tokens=1, run_tokens=1, threads=1)
    local_model(a.model)
    if a.out:
        dir_target(a.out, "results", a.force)  # refuse a protected -o before any work (interp/outputs.py)
    # the texts to run on: --data is read before torch is imported; else the held-out passages of the corpus
    corpus = a.data if a.data and _is_corpus(a.data) else None  # loaded below, one text per book
    texts = _data_texts(a.data) if a.data and corpus is None else None
    from interp.precision.lowp import LINEAR_MODES
    from interp.precision.runs import FORMATS
    formats = tuple(f.strip() for f in a.formats.split(",") if f.strip()) if a.formats.strip() != "none" else ()
    if a.formats.strip() != "none" and not formats:
        raise ValueError("--formats names no format; give e.g. bf16,fp16,int8, or 'none' for no end-to-end runs")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"--formats: unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)} or 'none'")
    if a.linear not in LINEAR_MODES:
        raise ValueError(f"--linear must be one of {', '.join(LINEAR_MODES)} (got {a.linear})")
    if a.quiet:
        from interp.commands._model import quiet_loading
        quiet_loading()
    import torch
    torch.set_num_threads(a.threads)
    if corpus is not None:
        from interp.data import load_corpus
        texts = [b.text for b in load_corpus(corpus).books]  # --max-tokens caps what is read
    elif texts is None:
        import interp.data
        texts = interp.data.heldout_texts(a.texts, a.chars)
    import interp
    from interp.precision.check import check
    model = interp.load_model(a.model, tokenizer=a.tokenizer).eval()
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"{a.model} has no tokenizer; interp precision encodes texts, so it needs a model with one "
                         "(or interp.precision.check(model, token_ids) in Python)")
    chk = check(model, texts, formats, batch_size=a.batch_size, max_tokens=a.max_tokens, run_tokens=a.run_tokens,
                linear=a.linear, progress=not a.quiet)
    print_check(chk)
    if a.out:
        print(f"\nsaved {chk.results().save(a.out, force=a.force)} (interp report reads it)")


def register(sub) -> None:
    from interp.commands._model import add_tokenizer_option
    p = sub.add_parser("precision", help="will a model survive fp16, bf16 and int8? its verdict table")
    p.add_argument("model", help="registry name (interp models), zoo checkpoint or transformers checkpoint path")
    p.add_argument("--data", default=None, help="a UTF-8 text file (one text per line) or a corpus, as interp collect "
                                                "takes it ('kjv', 'austen', a folder, hf:NAME; one text per book; "
                                                "cap it with --max-tokens); default: held-out passages")
    p.add_argument("--texts", type=int, default=4, help="held-out passages when --data is not given (default 4)")
    p.add_argument("--chars", type=int, default=600, help="characters per held-out passage (default 600)")
    p.add_argument("--max-tokens", type=int, default=None, help="tokens for the site statistics (default: all)")
    p.add_argument("--run-tokens", type=int, default=256,
                   help="tokens for the end-to-end runs (default 256; fp16 is slow on a CPU)")
    p.add_argument("--formats", default="bf16,fp16,int8",
                   help="end-to-end formats: bf16, fp16, int8, int8-token, comma-separated, or 'none'")
    p.add_argument("--linear", default="fp32-accumulate",
                   help="fp16 nn.Linear / Conv1D: fp32-accumulate (GPU GEMM semantics, fast here) or native (torch's fp16 GEMM)")
    p.add_argument("-o", "--out", default=None,
                   help="also save every table as a results directory (for interp report); must not exist, be "
                        "empty, or be an earlier result with --force")
    p.add_argument("--force", action="store_true", help="replace an earlier results directory at --out")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_tokenizer_option(p)
    p.set_defaults(func=run)
