"""`interp models`: list every named real model, its norm placement, and whether its weights are here."""
from __future__ import annotations

import argparse


def cache_word(state) -> str:
    """The `cached` column for an entry that is not ready: 'no' (not built), 'damaged' or 'unverified' (rebuilt or
    hashed when loaded; `available_models().cache` says why)."""
    word = str(state).split(" ", 1)[0] if isinstance(state, str) else ""
    return word if word in ("damaged", "unverified") else "no"


def run(args: argparse.Namespace) -> None:
    from interp.models import available_models, cache_root
    df = available_models()
    print(f"{'name':<32} {'family':<7} {'placement':<9} {'norm':<9} present cached     where")
    named, fams = df[~df.name.str.startswith("family:")], df[df.name.str.startswith("family:")]
    for r in named.itertuples():
        cached = "-" if r.cached is None else ("yes" if r.cached else cache_word(r.cache))
        print(f"{r.name:<32} {r.family:<7} {r.placement:<9} {r.norm_kind:<9} {'yes' if r.present else 'no':<7} "
              f"{cached:<10} "
              f"{r.where if args.verbose or r.present else r.where[:60] + '...'}")
    print(f"\nany local checkpoint of these {len(fams)} transformers families (config.json model_type):")
    for r in fams.itertuples():
        print(f"  {r.name[len('family:'):]:<14} {r.family:<10} {r.placement:<22} {r.norm_kind:<9} {r.source}")
    print(f"\ndequantized GGUF cache: {cache_root()} (set INTERP_CACHE to move it); "
          "also accepted: a zoo checkpoint, a transformers checkpoint directory, or a .gguf file")


def register(sub) -> None:
    p = sub.add_parser("models", help="list the real models, their norm placement and whether their weights are here")
    p.add_argument("-v", "--verbose", action="store_true", help="print the full 'missing' message for absent models")
    p.set_defaults(func=run)
