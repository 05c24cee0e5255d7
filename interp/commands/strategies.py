"""`interp strategies`: list the zoo's normalization strategies and where each puts its norms."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> None:
    from interp.zoo import STRATEGIES, strategy_config
    print(f"{'strategy':<14} {'placement':<10} {'norm':<10} final_norm")
    for name in STRATEGIES:
        c = strategy_config(name)
        print(f"{name:<14} {c.placement:<10} {c.norm:<10} {c.final_norm}")


def register(sub) -> None:
    p = sub.add_parser("strategies", help="list the zoo's normalization strategies and their placements")
    p.set_defaults(func=run)
