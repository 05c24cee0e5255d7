"""The `interp` command line. Each subcommand prints one-line errors and exits non-zero on failure."""
from __future__ import annotations

import argparse
import sys


def _strategies(args: argparse.Namespace) -> None:
    from interp.zoo import STRATEGIES, strategy_config
    print(f"{'strategy':<14} {'placement':<10} {'norm':<10} final_norm")
    for name in STRATEGIES:
        c = strategy_config(name)
        print(f"{name:<14} {c.placement:<10} {c.norm:<10} {c.final_norm}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp", description="Look inside transformers to see what their normalization does.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("strategies", help="list the zoo's normalization strategies and their placements")
    s.set_defaults(func=_strategies)
    s = sub.add_parser("report-default", help="the main job on the embedded defaults (what `make report` runs)")
    s.set_defaults(func=_strategies)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"interp: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
