"""The `interp` command line: subcommands live in `interp/commands/`, one module each.

Errors are one line on stderr and a non-zero exit code; no traceback for bad input.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import interp.commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp",
                                description="Look inside transformers to see what their normalization does.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(interp.commands.__path__), key=lambda i: i.name):
        importlib.import_module(f"interp.commands.{info.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, ImportError, OSError) as e:
        print(f"interp: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
