"""Bad inputs through the Python API (the hostile-user pass, defects 5, 9 and 10): token ids outside the
vocabulary or of a float dtype, zoo sizes that are not positive, an `exclude_first` that leaves nothing to
measure, and one very long line of text, which must be tokenized in bounded pieces that stop at max_tokens."""
import numpy as np
import pytest
import torch

import interp
from interp.cli import main
from interp.collectors.batches import TEXT_CHUNK, encode_bounded
from interp.collectors.stream import text_windows
from interp.data import TOKENIZER_PATH
from interp.tokenize import HFTokenizer, load_tokenizer

VOCAB, N_CTX = 4096, 16


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    m = interp.zoo.build("pre-ln", n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=VOCAB)
    m.tokenizer = load_tokenizer(TOKENIZER_PATH)
    return m


@pytest.mark.parametrize("data", [torch.tensor([[1, 2, VOCAB, 3]]), torch.tensor([[1, -1, 2, 3]]),
                                  [[1, 2, VOCAB + 7]], [np.array([5, -3, 2])]])
def test_ids_outside_the_vocabulary_are_refused(model, data):
    with pytest.raises(ValueError, match=r"outside the model's vocabulary \[0, 4096\)"):
        interp.collect(model, data, progress=False)


def test_float_ids_are_refused_not_truncated(model):
    with pytest.raises(ValueError, match="integer"):
        interp.collect(model, torch.tensor([[1.5, 2.0, 3.0]]), progress=False)


def test_exclude_first_that_leaves_nothing_is_refused(model):
    with pytest.raises(ValueError, match="exclude_first leaves no token to measure"):
        interp.collect(model, torch.tensor([[1], [2]]), exclude_first=True, progress=False)


@pytest.mark.parametrize("field,value", [("n_layers", 0), ("d_model", -4), ("n_heads", 0), ("d_mlp", 0),
                                         ("n_ctx", 0), ("d_vocab", -1), ("norm_eps", -1.0), ("norm_eps", 0.0)])
def test_zoo_sizes_must_be_positive(field, value):
    size = dict(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=N_CTX, d_vocab=64)
    with pytest.raises(ValueError, match=f"'{field}'"):
        interp.zoo.build("pre-ln", **{**size, field: value})


def long_line(n_chars: int) -> str:
    """One line of KJV-like text with runs of spaces, tabs and punctuation (where a cut could go wrong)."""
    rng = np.random.default_rng(0)
    words = ["In", "the", "beginning", "God", "created", "heaven,", "and", "earth.", "  ", "\t", "LORD;", "é"]
    out, n = [], 0
    while n < n_chars:
        w = words[rng.integers(len(words))] + " " * int(rng.integers(1, 3))
        out.append(w)
        n += len(w)
    return "".join(out)


def test_a_long_text_encodes_in_pieces_as_it_does_whole():
    """The pieces are cut where the byte-level BPE pre-tokenizer splits anyway: the ids equal one encode call's,
    and the context windows equal those of the whole text cut after encoding."""
    tok = load_tokenizer(TOKENIZER_PATH)
    text = long_line(3 * TEXT_CHUNK + 1234)
    whole = list(tok.encode(text))
    assert encode_bounded(tok, text) == whole
    step = N_CTX - 1
    want = [[tok.bos_id] + whole[i:i + step] for i in range(0, len(whole), step)]
    assert list(text_windows(tok, text, tok.bos_id, N_CTX)) == want


def test_a_run_longer_than_a_piece_without_a_space_encodes_as_it_does_whole():
    """A run of more than TEXT_CHUNK characters without a space (words run together, as in a URL or generated
    text) was cut mid-word, so its ids differed from one encode call's. Now it stays in one piece."""
    tok = load_tokenizer(TOKENIZER_PATH)
    rng = np.random.default_rng(0)
    words = ["the", "and", "of", "there", "where", "information", "model"]
    run = "".join(words[i] for i in rng.integers(len(words), size=30_000))[1:]  # ~145k characters, no space
    text = long_line(1000) + run + " " + long_line(TEXT_CHUNK + 10)
    whole = list(tok.encode(text))
    assert encode_bounded(tok, text) == whole
    step = N_CTX - 1
    assert list(text_windows(tok, text, tok.bos_id, N_CTX)) == [[tok.bos_id] + whole[i:i + step]
                                                                for i in range(0, len(whole), step)]


def test_max_tokens_stops_tokenizing_a_long_line(model, tmp_path, monkeypatch):
    """Defect 10: `--max-tokens 1000` on one 2 MB line tokenized all of it. Now it encodes a few pieces only."""
    (tmp_path / "big.txt").write_text(long_line(2_000_000) + "\n")
    model.save(tmp_path / "model")
    seen = []
    encode = HFTokenizer.encode
    monkeypatch.setattr(HFTokenizer, "encode", lambda self, text: (seen.append(len(text)), encode(self, text))[1])
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "model", "--data", "big.txt", "--max-tokens", "1000", "-o", "res", "--quiet"]) == 0
    assert interp.Results.load(tmp_path / "res").meta["n_tokens"] == 1000
    assert 0 < sum(seen) <= 2 * TEXT_CHUNK, seen  # 1000 tokens are ~4 KB of text: one piece suffices
