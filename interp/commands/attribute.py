"""`interp attribute`: DLA next to the true direct effect (and optionally the logit lens) for one model."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path


KIND, FILES = "attribution", ("dla.csv", "dla_summary.csv", "logit_lens.csv")


def _neurons(spec: str) -> list[int]:
    """--neurons: comma-separated layer numbers ≥ 0 (checked before the model loads)."""
    try:
        layers = [int(x) for x in spec.split(",")] if spec else []
    except ValueError:
        layers = [-1]
    if any(n < 0 for n in layers):
        raise ValueError(f"--neurons must be comma-separated layer numbers (0, 1, ...), got {spec!r}")
    return layers


def _ids(spec: str) -> list[int]:
    """--tokens: comma-separated integer ids (their range is checked once the model is loaded)."""
    try:
        return [int(t) for t in spec.split(",")]
    except ValueError:
        raise ValueError(f"--tokens must be comma-separated integer ids, got {spec!r}") from None


def _legacy(d: Path) -> bool:
    return all(e.name in FILES for e in d.iterdir())


def _token(args, text_flag: str, id_flag: str):
    text, tid = getattr(args, text_flag), getattr(args, id_flag)
    if text is not None and tid is not None:
        raise ValueError(f"give --{text_flag.replace('_', '-')} or --{id_flag.replace('_', '-')}, not both")
    return tid if tid is not None else text


def run(args: argparse.Namespace) -> None:
    from interp.commands._check import at_least, local_model
    from interp.outputs import LEGACY, check_dir_target, install_dir, temp_dir
    at_least(args, threads=1)
    local_model(args.model)
    LEGACY.setdefault(KIND, _legacy)
    check_dir_target(Path(args.out), KIND, args.force)  # before any work
    target = _token(args, "target", "target_id")
    if target is None:
        raise ValueError("say which logit to attribute: --target TEXT (one token) or --target-id ID")
    if (args.text is None) == (args.tokens is None):
        raise ValueError("give the input as --text TEXT or --tokens ID,ID,... (one of them)")
    neurons = _neurons(args.neurons)
    contrast = _token(args, "contrast", "contrast_id")
    ids = _ids(args.tokens) if args.tokens is not None else None
    import pandas as pd  # the checks above need none of these (a mistyped option fails in a moment)
    import torch

    import interp
    from interp.attribution import dla, dla_summary, logit_lens
    from interp.tokenize import batch_encode
    torch.set_num_threads(args.threads)
    model = interp.load_model(args.model, dtype=torch.float64 if args.float64 else torch.float32,
                              tokenizer=args.tokenizer)
    if ids is not None:
        tokens = torch.tensor([ids])
        if tokens.min() < 0 or tokens.max() >= model.W_U.shape[1]:
            raise ValueError(f"--tokens has ids outside the vocabulary 0..{model.W_U.shape[1] - 1}")
    else:
        if getattr(model, "tokenizer", None) is None:
            raise ValueError(f"{args.model} has no tokenizer; pass --tokens instead of --text")
        tokens, _ = batch_encode(model.tokenizer, [args.text])
    df = dla(model, tokens, target, contrast, pos=args.pos, neuron_layers=neurons,
             components=args.component or None)
    out = Path(args.out)
    s = dla_summary(df)
    lens = logit_lens(model, tokens, target) if args.lens else None
    tmp = temp_dir(out)  # the whole folder is written beside --out and renamed into place: a replaced output
    try:                 # keeps none of its old files (an earlier logit_lens.csv), a failure leaves nothing
        df.to_csv(tmp / "dla.csv", index=False)
        s.to_csv(tmp / "dla_summary.csv", index=False)
        if lens is not None:
            lens.to_csv(tmp / "logit_lens.csv", index=False)
        install_dir(tmp, out, KIND, args.force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(s.to_string(index=False))
    print(f"wrote {out}/dla.csv, dla_summary.csv{', logit_lens.csv' if args.lens else ''}")


def register(sub) -> None:
    from interp.commands._model import add_tokenizer_option
    p = sub.add_parser("attribute", help="direct logit attribution with its measured error (path ablation), logit lens",
                       description="DLA of every component (embedding, heads, biases, MLPs or neurons) of a zoo "
                                   "model, or of every sublayer of a real model, next to its true direct effect.")
    p.add_argument("model", help="a zoo checkpoint directory, a registry name (smollm2-135m, ...) or a model path")
    p.add_argument("--text", help="input text (encoded with the model's tokenizer)")
    p.add_argument("--tokens", help="input token ids, comma-separated")
    p.add_argument("--target", help="the target token, as text that is exactly one token")
    p.add_argument("--target-id", type=int, help="the target token id")
    p.add_argument("--contrast", help="attribute logit(target) - logit(contrast); contrast token as text")
    p.add_argument("--contrast-id", type=int, help="contrast token id")
    p.add_argument("--pos", type=int, default=-1, help="position read (default -1: the last)")
    p.add_argument("--neurons", default="", help="zoo only: comma-separated layers whose MLP is split into neurons")
    p.add_argument("--component", action="append", help="keep only this component (repeatable), e.g. L0.H1")
    p.add_argument("--lens", action="store_true", help="also write the logit lens (norm recomputed per layer)")
    p.add_argument("--float64", action="store_true", help="run in float64")
    p.add_argument("--out", required=True, help="output directory (CSV files, written atomically): new, empty, or "
                                               "an earlier attribution output with --force")
    p.add_argument("--force", action="store_true", help="replace the attribution output already in --out")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_tokenizer_option(p)
    p.set_defaults(func=run)
