"""Jane Austen's six novels from Debian's `r-cran-janeaustenr`, read from its R lazy-load database in pure
Python (no R needed).

Get the files without R: `apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_*.deb DIR`,
then point `INTERP_JANEAUSTENR` at DIR/usr/lib/R/site-library/janeaustenr (installed copies under
/usr/lib/R/site-library are found without it). Format: `data/Rdata.rdx` is a gzip-compressed serialized R
list whose `variables` maps each object name to (offset, length) in `data/Rdata.rdb`; each chunk there is a
4-byte big-endian length then the data, compressed as its `compressed` entry says (1: zlib, the default; 2 and 3,
from `--data-compress=bzip2/xz`: a type byte, '2' bzip2, 'Z' raw LZMA2, '1' zlib or '0' stored, then the data;
0: no length, stored); inside is R's XDR serialization (format versions 2 and 3).
"""
from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
import os
import struct
import zlib
from pathlib import Path

from interp.data.corpus import Book, Corpus

NOVELS = {"sensesensibility": "Sense & Sensibility", "prideprejudice": "Pride & Prejudice",
          "mansfieldpark": "Mansfield Park", "emma": "Emma", "northangerabbey": "Northanger Abbey",
          "persuasion": "Persuasion"}
SEARCH = ("/usr/lib/R/site-library/janeaustenr", "/usr/local/lib/R/site-library/janeaustenr",
          "/usr/lib/R/library/janeaustenr",   # below: where `make austen` extracts the Debian package
          str(Path(__file__).resolve().parents[2] / ".venv/janeaustenr/usr/lib/R/site-library/janeaustenr"))


class _RObj:
    """A pairlist / special value we don't need to interpret; keeps its pieces."""

    def __init__(self, kind, **kw):
        self.kind, self.__dict__ = kind, {**kw, "kind": kind}


class RReader:
    """Minimal R unserializer (XDR): vectors, strings, pairlists, symbols, references, ALTREP compact forms."""

    def __init__(self, data: bytes):
        self.b, self.i, self.refs = data, 0, []
        if self.b[:2] != b"X\n":
            raise ValueError("not an XDR R serialization (expected 'X\\n' header)")
        self.i = 2
        version = self.int()
        self.int(), self.int()
        self.native = "utf-8"      # how strings not marked UTF-8 / latin1 / ASCII are decoded
        if version == 3:
            n = self.int()         # native encoding name of the writing R session
            self.native = _codec(self.b[self.i:self.i + n].decode("ascii", errors="replace"))
            self.i += n

    def int(self) -> int:
        v = struct.unpack_from(">i", self.b, self.i)[0]
        self.i += 4
        return v

    def length(self) -> int:
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def item(self):
        flags = self.int()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t == 254 or t == 0:                      # NILVALUE, NILSXP
            return None
        if t in (253, 252, 251, 250, 242, 241):     # environments and markers
            return _RObj("special", code=t)
        if t == 255:                                # REFSXP
            idx = flags >> 8 or self.int()
            return self.refs[idx - 1]
        if t == 1:                                  # SYMSXP
            sym = _RObj("symbol", name=self.item())
            self.refs.append(sym)
            return sym
        if t in (249, 248, 247):                    # NAMESPACE / PACKAGE / PERSIST: a string vector
            self.int()
            obj = _RObj("persist", names=[self.item() for _ in range(self.int())])
            self.refs.append(obj)
            return obj
        if t == 4:                                  # ENVSXP
            env = _RObj("env")
            self.refs.append(env)
            self.int()
            env.enclos, env.frame, env.hashtab, env.attr = self.item(), self.item(), self.item(), self.item()
            return env
        if t in (2, 3, 5, 6, 17, 239, 240):         # pairlist-like: attr, tag, car, cdr
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            return _RObj("pairlist", attr=attr, tag=tag, car=car, cdr=self.item())
        if t == 9:                                  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.i:self.i + n]
            self.i += n
            return _decode_char(s, flags >> 12, self.native)
        if t in (10, 13):                           # LGLSXP, INTSXP
            n = self.length()
            v = list(struct.unpack_from(f">{n}i", self.b, self.i))
            self.i += 4 * n
        elif t == 14:                               # REALSXP
            n = self.length()
            v = list(struct.unpack_from(f">{n}d", self.b, self.i))
            self.i += 8 * n
        elif t == 24:                               # RAWSXP
            n = self.length()
            v = self.b[self.i:self.i + n]
            self.i += n
        elif t in (16, 19, 20):                     # STRSXP, VECSXP, EXPRSXP
            v = [self.item() for _ in range(self.length())]
        elif t == 238:                              # ALTREP: info, state, attr
            info, state, _ = self.item(), self.item(), self.item()
            return _altrep(info, state)
        else:
            raise ValueError(f"R serialization type {t} is not supported by this reader")
        if has_attr:
            self.item()
        return v


# encoding marks in a CHARSXP's levels (flags >> 12), as R's serialize writes them
_BYTES, _LATIN1, _UTF8, _ASCII = 1 << 1, 1 << 2, 1 << 3, 1 << 6


def _codec(name: str) -> str:
    """The Python codec of an R native encoding name (e.g. 'UTF-8', 'latin1', 'CP1252'); UTF-8 if unknown."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


def _decode_char(s: bytes, levels: int, native: str) -> str:
    """A CHARSXP's text by its encoding mark: latin1 as R converts it (CP1252, ISO-8859-1 where CP1252 has
    no character), UTF-8 / ASCII as UTF-8, unmarked strings in the writer's native encoding."""
    if levels & _LATIN1:
        try:
            return s.decode("cp1252")
        except UnicodeDecodeError:
            return s.decode("latin-1")
    return s.decode("utf-8" if levels & (_UTF8 | _ASCII) else native, errors="replace")


def _altrep(info, state):
    cls = info.car.name if isinstance(info, _RObj) and isinstance(info.car, _RObj) else ""
    if cls == "compact_intseq":
        n, start, step = state
        return [int(start + k * step) for k in range(int(n))]
    if cls == "compact_realseq":
        n, start, step = state
        return [start + k * step for k in range(int(n))]
    if cls.startswith("wrap_"):   # state: CONS(wrapped vector, metadata), a pairlist
        return state.car if isinstance(state, _RObj) else state[0]
    if cls == "deferred_string":
        return [str(x) for x in state.car]
    raise ValueError(f"R ALTREP class {cls!r} is not supported by this reader")


def _named(pl) -> dict:
    """A serialized named list (VECSXP with names attribute is read as list; rdx uses a pairlist-free list)."""
    out = {}
    while isinstance(pl, _RObj) and pl.kind == "pairlist":
        out[pl.tag.name] = pl.car
        pl = pl.cdr
    return out


def read_lazyload(rdx: Path) -> dict[str, list]:
    """All objects of an R lazy-load database (`X.rdx` + `X.rdb`) as Python values (vectors become lists)."""
    rdb = rdx.with_suffix(".rdb")
    data = rdx.read_bytes()
    index = RReader(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else zlib.decompress(data))
    # the .rdx holds list(variables=, references=, compressed=); its names attribute is read separately
    top = _read_with_names(index)
    compressed = int((top.get("compressed") or [1])[0])
    raw = rdb.read_bytes()
    out = {}
    for name, (offset, length) in top["variables"].items():
        out[name] = RReader(_decompress(raw[offset:offset + length], compressed, f"{rdb} object {name!r}")).item()
    return out


def _decompress(chunk: bytes, compressed: int, what: str) -> bytes:
    """One lazy-load chunk's serialized bytes, undoing R's compression (`compressed`: 0, 1, 2 or 3)."""
    if not compressed:
        return chunk
    if compressed == 1:
        return zlib.decompress(chunk[4:])
    kind, data = chunk[4:5], chunk[5:]
    if kind == b"Z":   # R_compress3: a raw LZMA2 stream (no .xz container), preset 6 or lower
        return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 26}])
    if kind == b"2":
        return bz2.decompress(data)
    if kind == b"1":
        return zlib.decompress(data)
    if kind == b"0":
        return data
    raise ValueError(f"{what}: unknown R compression type {kind!r} (expected 'Z', '2', '1' or '0'); reinstall "
                     "janeaustenr")


def _read_with_names(r: RReader) -> dict:
    """Read a named VECSXP (list) whose elements are named integer vectors, keeping the names."""
    def item_named():
        flags = r.int()
        t, has_attr = flags & 0xFF, flags & (1 << 9)
        if t not in (13, 19, 16, 10):
            r.i -= 4
            return r.item()
        n = r.length()
        if t == 19:
            vals = [item_named() for _ in range(n)]
        elif t == 16:
            vals = [r.item() for _ in range(n)]
        else:
            vals = list(struct.unpack_from(f">{n}i", r.b, r.i))
            r.i += 4 * n
        if has_attr:
            names = _named(r.item()).get("names")
            if names is not None and t == 19:
                return dict(zip(names, vals))
        return vals
    return item_named()


def find_janeaustenr() -> Path:
    """The janeaustenr package directory, or a clear error saying how to get it. INTERP_JANEAUSTENR, when set,
    is the only place looked at: a wrong value is an error, never a silent fall-back to another copy."""
    how = ("apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_*.deb DIR, then set "
           "INTERP_JANEAUSTENR=DIR/usr/lib/R/site-library/janeaustenr")
    env = os.environ.get("INTERP_JANEAUSTENR")
    if env:
        if (Path(env) / "data" / "Rdata.rdx").is_file():
            return Path(env)
        raise FileNotFoundError(f"INTERP_JANEAUSTENR={env} has no data/Rdata.rdx; point it at the janeaustenr "
                                f"folder that holds data/Rdata.rdx, or unset it. To get one: {how}")
    for c in SEARCH:
        if (Path(c) / "data" / "Rdata.rdx").is_file():
            return Path(c)
    raise FileNotFoundError(f"corpus 'austen' needs Debian's r-cran-janeaustenr: {how}")


def austen() -> Corpus:
    """The six novels, one book each (lines joined with newlines, as in the package)."""
    objs = read_lazyload(find_janeaustenr() / "data" / "Rdata.rdx")
    books = []
    for key, title in NOVELS.items():
        if key not in objs:
            raise ValueError(f"janeaustenr data has no {key!r}; found {sorted(objs)}")
        books.append(Book(title, "\n".join(s if s is not None else "" for s in objs[key]).strip() + "\n"))
    return Corpus("austen", tuple(books))
