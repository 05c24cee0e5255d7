"""benchmarks/gguf_read.py: both readers are timed on the same file, and must parse the same metadata."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gguf_read  # noqa: E402

gguf = pytest.importorskip("gguf")


def tiny_llama(path: Path, n_vocab: int = 500) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_tensor("token_embd.weight", np.zeros((n_vocab, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_row_times_both_readers_on_the_vocabulary_written(tmp_path):
    row = gguf_read.bench("tiny", tiny_llama(tmp_path / "t.gguf"), repeats=2)
    assert row["vocab"] == 500 and row["repeats"] == 2 and row["same config and tokenizer"]
    assert len(row["timing"]["ratio_cpu"]["plain"]["ci95"]) == 2 and row["plain/gguf (cpu, median)"] > 0


def test_readers_that_disagree_stop_the_script(tmp_path, monkeypatch):
    path = tiny_llama(tmp_path / "t.gguf")
    real = gguf_read.read_with
    calls = []

    def off_by_one(cls, p):
        out = real(cls, p)
        calls.append(cls)
        if len(calls) == 2:
            out["tokenizer"]["tokens"] = out["tokenizer"]["tokens"][:-1]
        return out
    monkeypatch.setattr(gguf_read, "read_with", off_by_one)
    with pytest.raises(SystemExit, match="parse different metadata"):
        gguf_read.bench("tiny", path, repeats=1)


def test_an_unknown_model_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gguf_read.py", "--models", "gemma-3-270m,nope", "--no-write"])
    with pytest.raises(SystemExit, match="unknown nope; the GGUF-packaged models are smollm2-135m"):
        gguf_read.main()
