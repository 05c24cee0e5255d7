"""CLI subcommands, one module per command. Each module defines `register(subparsers)`, which adds its parser
and sets `func` (a callable taking the parsed args). `interp/cli.py` discovers every module here, so adding a
command means adding one file.
"""
