"""interp.data: corpora, the split by book, tokenizers and batches, checked against brute-force references."""
import hashlib
import json
import bz2
import gzip
import lzma
import math
import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest
import torch

import interp.data as D
from interp.data.corpus import Book, Corpus


@pytest.fixture(scope="module")
def kjv():
    return D.load_corpus("kjv")


def test_kjv_has_every_book_and_verse(kjv):
    import importlib.util
    path = Path(list(importlib.util.find_spec("bible").submodule_search_locations)[0]) / "data" / "kjv.jsonl"
    verses = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(kjv.books) == len({v["book"] for v in verses}) == 66
    assert kjv.books[0].name == "Genesis" and "In the beginning God created" in kjv.books[0].text
    # every verse's text appears in its book, in order
    by_book = {b.name: b.text for b in kjv.books}
    for v in verses[::997]:
        assert v["text"].strip() in by_book[v["book"]]


def test_split_is_by_whole_book_deterministic_and_order_free(kjv):
    tr, va = D.split_by_book(kjv, 0.1)
    names_tr, names_va = {b.name for b in tr.books}, {b.name for b in va.books}
    assert not names_tr & names_va and names_tr | names_va == {b.name for b in kjv.books}
    assert all(b in kjv.books for b in tr.books + va.books)               # books kept whole
    assert va.n_chars >= 0.1 * kjv.n_chars and tr.n_chars > 0.8 * kjv.n_chars
    shuffled = Corpus("kjv", tuple(reversed(kjv.books)))
    assert {b.name for b in D.split_by_book(shuffled, 0.1)[1].books} == names_va
    assert D.split_by_book(kjv, 0.1)[1].hash == va.hash


def test_split_keeps_copies_of_a_book_on_one_side():
    # a folder with Jupyter checkpoint copies: each chapter twice, under two names
    texts = [f"chapter {i} " * (100 + i) for i in range(8)]
    books = [Book(f"ch{i}.txt", t) for i, t in enumerate(texts)]
    books += [Book(f".ipynb_checkpoints/ch{i}-checkpoint.txt", t) for i, t in enumerate(texts)]
    tr, va = D.split_by_book(Corpus("c", tuple(books)), 0.1)
    assert not {b.text for b in tr.books} & {b.text for b in va.books}
    assert len(tr.books) + len(va.books) == 16 and va.books and tr.books
    # the rule picks the first book by name hash and brings its copy along
    first = min(books, key=lambda b: hashlib.sha256(b.name.encode()).hexdigest())
    assert [b.name for b in va.books if b.text == first.text] and first in va.books
    # with no copies the rule is unchanged: books by name hash until validation holds >= 10 % (brute force)
    distinct = Corpus("d", tuple(books[:8]))
    want, size = [], 0
    for b in sorted(distinct.books, key=lambda b: hashlib.sha256(b.name.encode()).hexdigest())[:-1]:
        if size >= 0.1 * distinct.n_chars:
            break
        want.append(b.name)
        size += len(b.text)
    assert sorted(b.name for b in D.split_by_book(distinct, 0.1)[1].books) == sorted(want)
    with pytest.raises(ValueError, match="every book of corpus 'same' has the same text"):
        D.split_by_book(Corpus("same", (books[0], books[8])))


def test_corpus_hash_changes_with_content():
    a = Corpus("x", (Book("a", "hello"), Book("b", "world")))
    b = Corpus("x", (Book("a", "hello"), Book("b", "world!")))
    assert a.hash != b.hash and a.hash == Corpus("y", a.books).hash


def test_text_folder_is_one_book_per_file(tmp_path):
    (tmp_path / "b.txt").write_text("second book " * 20)
    (tmp_path / "a.txt").write_text("first book " * 20)
    c = D.load_corpus(str(tmp_path))
    assert [b.name for b in c.books] == ["a.txt", "b.txt"]
    tr, va = D.split_by_book(c, 0.3)
    assert len(tr.books) == 1 and len(va.books) == 1


def test_text_folder_skips_hidden_copies(tmp_path):
    (tmp_path / "a.txt").write_text("first book, final " * 20)
    (tmp_path / "b.md").write_text("second book " * 20)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("first book, draft " * 20)
    (tmp_path / ".notes.txt").write_text("a hidden file " * 20)
    (tmp_path / "part2").mkdir()
    (tmp_path / "part2" / "c.txt").write_text("third book " * 20)
    assert [b.name for b in D.load_corpus(str(tmp_path)).books] == ["a.txt", "b.md", "part2/c.txt"]


def test_bad_corpora_raise_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.load_corpus(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        D.load_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8.*offset 3"):
        D.load_corpus(str(tmp_path / "latin1.txt"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        D.load_corpus("hf:surely/not-a-cached-dataset")
    with pytest.raises(ValueError, match="at least two"):
        D.split_by_book(Corpus("one", (Book("a", "text"),)))


def test_empty_corpus_name_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "notes.md").write_text("a stray note " * 20)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "log.txt").write_text("a stray log " * 20)
    monkeypatch.chdir(tmp_path)
    for spec in ("", "  "):
        with pytest.raises(ValueError, match="corpus is an empty string; pass 'kjv'"):
            D.load_corpus(spec)


def test_hf_corpus_stays_offline_when_datasets_was_imported_online(monkeypatch):
    """datasets / huggingface_hub read HF_HUB_OFFLINE at import: imported before (by transformers, a model load)
    without it, they stay online, and setting the variable later changes nothing. No socket may be opened."""
    import os
    import socket

    import datasets
    from huggingface_hub import constants
    for mod, attr in ((datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                      (constants, "HF_HUB_OFFLINE")):
        monkeypatch.setattr(mod, attr, False)           # as if imported without the offline variables
    attempts = []

    def refuse(*args, **kw):
        attempts.append(args[:2])
        raise OSError("network refused by the test")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    env = dict(os.environ)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        D.load_corpus("hf:surely/not-a-cached-dataset")
    assert attempts == []
    assert datasets.config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is False   # put back
    assert dict(os.environ) == env


def test_bpe_round_trips_unseen_text_and_is_deterministic(kjv):
    train = [b.text[:20000] for b in kjv.books[:5]]
    tok = D.train_bpe(train, vocab_size=400)
    assert tok.vocab_size == 400 and tok.bos_id == 0 and tok.pad_id == 1
    text = "Naïve café — ☃ 𝄞 tabs\tand\nnewlines; 12345 <|endoftext|>?"
    assert tok.decode(tok.encode(text)) == text
    assert D.train_bpe(train, vocab_size=400).to_json() == tok.to_json()
    byte = D.ByteTokenizer()
    assert byte.decode(byte.encode(text)) == text and byte.encode("é") == [0xC3, 0xA9]


def test_shipped_tokenizer_round_trips_validation_text_and_hash_matches():
    tok = D.load_tokenizer(D.TOKENIZER_PATH)
    assert tok.vocab_size == 4096
    for text in D.heldout_texts(4, 300):
        assert tok.decode(tok.encode(text)) == text
    assert D.tokenizer_hash(D.TOKENIZER_PATH) == hashlib.sha256(D.TOKENIZER_PATH.read_bytes()).hexdigest()


def test_prepare_refuses_a_tokenizer_of_another_size_than_asked(tmp_path):
    c = Corpus("c", (Book("a", "alpha beta gamma delta " * 300), Book("b", "epsilon zeta eta theta " * 300)))
    path = tmp_path / "tok.json"
    d = D.prepare(c, path, vocab_size=270)                     # missing: trained with the size asked for
    assert d.tokenizer.vocab_size == 270 and path.is_file()
    assert D.prepare(c, path).tokenizer.vocab_size == 270     # unset: whatever the file holds
    with pytest.raises(ValueError, match=r"tok.json has 270 tokens, not the 1024 asked for"):
        D.prepare(c, path, vocab_size=1024)
    with pytest.raises(ValueError, match=r"has 4096 tokens, not the 1024 asked for"):
        D.get_tokenizer(path=D.TOKENIZER_PATH, vocab_size=1024)


def test_batches_are_bos_then_contiguous_stream_slices_and_pure_in_step():
    stream = torch.arange(10, 1010)
    tb = D.TokenBatches(stream, seq_len=16, batch_size=5, bos_id=0, seed=3)
    for i in (0, 7, 12, 13, 40):   # crosses epoch boundaries (62 windows, 5 per batch)
        b = tb.batch(i)
        assert (b.x[:, 0] == 0).all() and torch.equal(b.x[:, 1:], b.y[:, :-1])
        for row, c in zip(b.y, b.cond):
            start = int(row[0]) - 10
            assert start % 16 == 0 and torch.equal(row, stream[start:start + 16])
            assert math.isclose(float(c), start / 1000, rel_tol=1e-6)
        assert torch.equal(D.TokenBatches(stream, 16, 5, 0, seed=3).batch(i).x, b.x)
    epoch0 = torch.cat([tb.batch(i).y[:, 0] for i in range(12)])[:60]
    assert len(set(epoch0.tolist())) == 60   # no window repeats within an epoch


def test_batches_read_numpy_token_arrays_of_any_byte_order():
    import numpy as np
    want = list(range(300, 316))                             # the first window, by hand
    for dtype in ("<u2", ">u2", ">i4", "<u4", ">i8"):
        b = D.TokenBatches(np.arange(300, 600).astype(dtype), 16, 2, 0, shuffle=False).first(1)[0]
        assert b.y[0].tolist() == want and b.x[0].tolist() == [0] + want[:-1], dtype


def test_batches_refuse_float_token_arrays():
    import numpy as np
    for t in (np.arange(40.0) + 0.7, torch.arange(40.0) + 0.7):
        with pytest.raises(ValueError, match="token ids must be integers, got a .*float"):
            D.TokenBatches(t, 4, 2, 0)


def test_unigram_entropy_matches_brute_force():
    tr = torch.tensor([1, 1, 2, 3, 3, 3])
    va = torch.tensor([1, 4])
    cnt, n, V = Counter(tr.tolist()), 6, 5
    h = -sum(c / n * math.log(c / n) for c in cnt.values())
    xent = -(math.log((cnt[1] + 1) / (n + V)) + math.log((0 + 1) / (n + V))) / 2
    got = D.unigram_entropy(tr, va, V)
    assert math.isclose(got["unigram_entropy_train"], h, rel_tol=1e-9)
    assert math.isclose(got["unigram_xent_val"], xent, rel_tol=1e-9)


def test_heldout_tokens_are_the_validation_stream_from_its_start():
    x = D.heldout_tokens(3, 32)
    tok = D.load_tokenizer(D.TOKENIZER_PATH)
    _, val = D.split_by_book(D.load_corpus("kjv"))
    first = tok.encode(val.books[0].text)[:31]
    assert x.shape == (3, 32) and (x[:, 0] == tok.bos_id).all() and x[0, 1:].tolist() == first


def test_heldout_sample_of_a_small_corpus_is_refused_not_shortened(tmp_path):
    for i in range(5):
        (tmp_path / f"b{i}.txt").write_text(f"book {i} says hello world " * (40 + 10 * i))
    _, val = D.split_by_book(D.load_corpus(str(tmp_path)))
    chars = len("\n\n".join(b.text for b in val.books))
    n_tok = len(D.encode_corpus(val, D.load_tokenizer(D.TOKENIZER_PATH)))
    windows = n_tok // 127
    with pytest.raises(ValueError, match=f"has {n_tok} tokens, {windows} windows of 127: fewer than the 8 sequences"):
        D.heldout_tokens(8, 128, corpus=str(tmp_path))
    assert D.heldout_tokens(windows, 128, corpus=str(tmp_path)).shape == (windows, 128)
    with pytest.raises(ValueError, match=f"hold {chars} characters, fewer than 8 passages × 400 characters"):
        D.heldout_texts(8, 400, corpus=str(tmp_path))
    assert all(len(t) > 300 for t in D.heldout_texts(chars // 400, 400, corpus=str(tmp_path)))


def test_austen_lazyload_database_reads_the_six_novels():
    from interp.data import austen as A
    try:
        pkg = A.find_janeaustenr()
    except FileNotFoundError:
        pytest.skip("r-cran-janeaustenr not present (apt-get download r-cran-janeaustenr; dpkg -x; "
                    "INTERP_JANEAUSTENR=...)")
    objs = A.read_lazyload(pkg / "data" / "Rdata.rdx")
    # reference: R's janeaustenr / tidytext::austen_books() has 73,422 lines; P&P has 13,030
    assert sum(len(objs[k]) for k in A.NOVELS) == 73422 and len(objs["prideprejudice"]) == 13030
    assert objs["prideprejudice"][0] == "PRIDE AND PREJUDICE"
    assert any("It is a truth universally acknowledged" in line for line in objs["prideprejudice"][:20])
    c = D.load_corpus("austen")
    assert [b.name for b in c.books] == list(A.NOVELS.values())


def _xdr(*ints: int) -> bytes:
    return struct.pack(f">{len(ints)}i", *ints)


def _rds(body: bytes, native: bytes = b"UTF-8") -> bytes:
    """R's XDR serialization, format 3, laid out by hand: 'X\\n', version, writer and reader R versions, native
    encoding name, then the object."""
    return b"X\n" + _xdr(3, 0x40201, 0x30500, len(native)) + native + body


def _strsxp(items: list[tuple[bytes | None, int]]) -> bytes:
    """A character vector: STRSXP (16), length, then per string CHARSXP (9) with its encoding levels << 12,
    byte length (-1: NA) and bytes."""
    out = _xdr(16, len(items))
    for raw, levels in items:
        out += _xdr(9, -1) if raw is None else _xdr(9 | levels << 12, len(raw)) + raw
    return out


def test_r_reader_decodes_strings_by_their_encoding_mark():
    from interp.data.austen import RReader
    # levels: 8 UTF-8, 4 latin1 (R converts it as CP1252), 64 ASCII, 0 unmarked (the writer's native encoding)
    body = _strsxp([(b"\xc2\xa320,000", 8), (b"\xa320,000", 4), (b"caf\xe9 \x93quoted\x94", 4), (b"plain", 64),
                    (None, 0), (b"na\xefve", 0)])
    assert RReader(_rds(body, native=b"latin1")).item() == \
        ["\u00a320,000", "\u00a320,000", "caf\u00e9 \u201cquoted\u201d", "plain", None, "na\u00efve"]
    assert RReader(_rds(_strsxp([(b"na\xc3\xafve", 0)]))).item() == ["na\u00efve"]


def test_r_reader_unwraps_altrep_wrappers():
    from interp.data.austen import RReader

    def sym(name: bytes) -> bytes:
        return _xdr(1, 9 | 64 << 12, len(name)) + name

    def wrapper(cls: bytes, sexptype: int, wrapped: bytes) -> bytes:
        """ALTREP (238): info = pairlist(class symbol, package symbol, type), state = CONS(wrapped, metadata
        INTSXP), then the attributes (NILVALUE 254); LISTSXP is 2."""
        info = _xdr(2) + sym(cls) + _xdr(2) + sym(b"base") + _xdr(2) + _xdr(13, 1, sexptype) + _xdr(254)
        return _xdr(238) + info + _xdr(2) + wrapped + _xdr(13, 2, 0, 0) + _xdr(254)

    assert RReader(_rds(wrapper(b"wrap_string", 16, _strsxp([(b"Emma", 64), (b"Persuasion", 64)])))).item() == \
        ["Emma", "Persuasion"]
    assert RReader(_rds(wrapper(b"wrap_integer", 13, _xdr(13, 3, 7, 8, -9)))).item() == [7, 8, -9]


def _names_attr(names: list[str], first: bool) -> bytes:
    """A names attribute: LISTSXP (2) with a tag, the symbol 'names' (SYMSXP 1 in full the first time, then
    REFSXP 255 to reference 1), the STRSXP of names, NILVALUE (254)."""
    sym = _xdr(1, 9 | 64 << 12, 5) + b"names" if first else _xdr(255 | 1 << 8)
    return _xdr(2 | 1 << 10) + sym + _strsxp([(n.encode(), 64) for n in names]) + _xdr(254)


def _lazyload_db(folder: Path, chunks: dict[str, bytes], compressed: bytes) -> Path:
    """Rdata.rdx / Rdata.rdb as R's makeLazyLoadDB writes them: the .rdb is the chunks end to end, the .rdx a
    gzipped list(variables = list(NAME = c(offset, length)), references = list(), compressed = ...): VECSXPs
    (19) with attributes (1 << 9), each attribute list after the elements."""
    rdb, entries = b"", b""
    for chunk in chunks.values():
        entries += _xdr(13, 2, len(rdb), len(chunk))
        rdb += chunk
    index = (_xdr(19 | 1 << 9, 3) + _xdr(19 | 1 << 9, len(chunks)) + entries + _names_attr(list(chunks), True)
             + _xdr(19, 0) + compressed + _names_attr(["variables", "references", "compressed"], False))
    (folder / "Rdata.rdx").write_bytes(gzip.compress(_rds(index)))
    (folder / "Rdata.rdb").write_bytes(rdb)
    return folder / "Rdata.rdx"


def test_r_lazyload_reads_every_compression_r_writes(tmp_path):
    from interp.data.austen import read_lazyload
    a, b = _rds(_strsxp([(b"It is a truth", 64), (b"", 64)])), _rds(_strsxp([(b"universally", 64)]))
    want = {"a": ["It is a truth", ""], "b": ["universally"]}
    n = lambda x: struct.pack(">I", len(x))  # noqa: E731  (4-byte big-endian uncompressed length)
    xz = lambda x: lzma.compress(x, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}])  # noqa: E731
    cases = {  # R's `compressed` entry (INTSXP 13 / LGLSXP 10) -> its chunks
        "xz (3)": (_xdr(13, 1, 3), {"a": n(a) + b"Z" + xz(a), "b": n(b) + b"0" + b}),
        "bzip2 (2)": (_xdr(13, 1, 2), {"a": n(a) + b"2" + bz2.compress(a), "b": n(b) + b"0" + b}),
        "gzip (TRUE)": (_xdr(10, 1, 1), {"a": n(a) + zlib.compress(a), "b": n(b) + zlib.compress(b)}),
        "none (FALSE)": (_xdr(10, 1, 0), {"a": a, "b": b}),
    }
    for case, (compressed, chunks) in cases.items():
        d = tmp_path / case.split()[0]
        d.mkdir()
        assert read_lazyload(_lazyload_db(d, chunks, compressed)) == want, case
    bad = _lazyload_db(tmp_path, {"a": n(a) + b"7" + a}, _xdr(13, 1, 3))
    with pytest.raises(ValueError, match=r"object 'a': unknown R compression type b'7'"):
        read_lazyload(bad)


def test_austen_missing_says_how_to_get_it(monkeypatch, tmp_path):
    from interp.data import austen as A
    monkeypatch.setenv("INTERP_JANEAUSTENR", str(tmp_path))
    monkeypatch.setattr(A, "SEARCH", ())
    with pytest.raises(FileNotFoundError, match="apt-get download r-cran-janeaustenr"):
        D.load_corpus("austen")


def test_austen_wrong_env_is_an_error_not_another_copy(monkeypatch, tmp_path):
    from interp.data import austen as A
    elsewhere = tmp_path / "installed" / "janeaustenr"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "Rdata.rdx").write_bytes(b"")
    monkeypatch.setattr(A, "SEARCH", (str(elsewhere),))
    assert A.find_janeaustenr() == elsewhere                  # no variable: the installed copy
    monkeypatch.setenv("INTERP_JANEAUSTENR", str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match=r"INTERP_JANEAUSTENR=.*typo has no data/Rdata.rdx"):
        A.find_janeaustenr()
