"""Shared test set-up: offline, deterministic, single-threaded torch (INTERP_TEST_THREADS to change it)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("INTERP_TEST_THREADS", "1")))
