"""The model option shared by the commands that load a model with interp.load_model (collect, attribute, precision)."""
from __future__ import annotations

import argparse
import os
import sys


def add_tokenizer_option(p: argparse.ArgumentParser) -> None:
    """`--tokenizer DIR`: passed to interp.load_model(..., tokenizer=DIR)."""
    p.add_argument("--tokenizer", metavar="DIR", default=None,
                   help="read the tokenizer from this folder (tokenizer.json, vocab files or a SentencePiece "
                        "tokenizer.model; or an HF repo id in the local HF cache) instead of the model's own; "
                        "transformers models only, not zoo checkpoints")


def quiet_loading() -> None:
    """For --quiet: no 'Loading weights' bar from transformers / huggingface_hub while the model loads."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when they are imported
    if "transformers" in sys.modules:  # already imported (main() called in-process)
        sys.modules["transformers"].utils.logging.disable_progress_bar()
