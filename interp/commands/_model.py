"""The model option shared by the commands that load a model with interp.load_model (collect, attribute, precision)."""
from __future__ import annotations

import argparse


def add_tokenizer_option(p: argparse.ArgumentParser) -> None:
    """`--tokenizer DIR`: passed to interp.load_model(..., tokenizer=DIR)."""
    p.add_argument("--tokenizer", metavar="DIR", default=None,
                   help="read the tokenizer from this folder (tokenizer.json, vocab files or a SentencePiece "
                        "tokenizer.model; or an HF repo id in the local HF cache) instead of the model's own; "
                        "transformers models only, not zoo checkpoints")
