"""The `interp` command line: subcommands live in `interp/commands/`, one module each.

Errors are one line on stderr and a non-zero exit code, never a traceback: a usage error exits 2, a bad input
(a file, a value, a refused output path) exits 1 with what is wrong and what to do, and an unexpected internal
error exits 1 with its type and message. `INTERP_DEBUG=1` re-raises, so the traceback shows. A reader that closes
the output pipe early (`interp models | head`) ends the command quietly with 141, as SIGPIPE ends other tools.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):  # nothing is fetched, ever: set
    os.environ.setdefault(_var, "1")                                          # before any library reads them
# torch reads this once, at its first allocation: CPU tensors of 2 MB or more then start 2 MB-aligned and are marked
# for transparent huge pages, so a big activation (Gemma-3's 262k-wide logits, 1.2 GB a batch) is not faulted in
# 4 KB page by page at every forward (a Gemma-3 forward's system time 0.9 s -> 0.4 s). A user's own setting stands.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import interp.commands  # noqa: E402

DEBUG_ENV = "INTERP_DEBUG"
MAX_LINE = 600  # characters of an error line; the start of a message says what is wrong


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (`interp collect: error: ...; see interp collect -h`)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} -h)\n")


def one_line(text: str) -> str:
    """`text` on one line: lines joined with '; ', runs of blanks squeezed, cut at MAX_LINE characters."""
    parts = [" ".join(p.split()) for p in str(text).splitlines()]
    s = "; ".join(p for p in parts if p)
    return s if len(s) <= MAX_LINE else s[:MAX_LINE - 1] + "…"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="interp", description="Look inside transformers to see what their normalization does.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for info in sorted(pkgutil.iter_modules(interp.commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"interp.commands.{info.name}").register(sub)
    return p


# what counts as the user's mistake (a clear message is printed as it is); anything else is reported as an
# internal error, still on one line
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, RuntimeError, ImportError, OSError, UnicodeError)


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not debug:  # libraries' warnings and info logs are not the user's errors: stderr keeps interp's own lines
        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # -h, or a usage error already printed on one line
        return e.code if isinstance(e.code, int) else 2
    try:
        args.func(args)
        sys.stdout.flush()  # a closed pipe is met here, not at exit
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (`interp models | head`): quiet, as SIGPIPE leaves a tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not fail again
        return 141
    except SystemExit as e:  # sys.exit(n) keeps n; sys.exit("why") is an error whose text the user must see
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(f"interp: error: {one_line(str(e.code))}", file=sys.stderr)
        return 1
    except MemoryError:
        if debug:
            raise
        print("interp: error: out of memory; try a smaller --batch-size or --max-tokens", file=sys.stderr)
        return 1
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"interp: error: {one_line(str(e)) or type(e).__name__}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 — never a traceback for the user; INTERP_DEBUG=1 shows it
        if debug:
            raise
        print(f"interp: error: unexpected {type(e).__name__}: {one_line(str(e))} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
