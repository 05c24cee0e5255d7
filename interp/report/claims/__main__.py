"""Print the claims table of a report run as Markdown: `python -m interp.report.claims report/claims.json`.

The docs and README quote verdicts from this output (written by the main job next to report/index.html), so
they state what the report computed and nothing stronger."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from interp.report.claims.display import READS, markdown_table


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path("report/claims.json")
    if not path.is_file():
        print(f"no claims file at {path}; run `make report` (it writes report/claims.json)", file=sys.stderr)
        return 2
    try:
        claims = pd.read_json(path, orient="records")
    except ValueError as e:
        print(f"{path} is not a claims file written by the report ({e}); run `make report` again", file=sys.stderr)
        return 2
    missing = [c for c in READS if c not in claims.columns]
    if claims.empty or missing:  # another JSON list (or an empty one): the report writes one row per claim × subject
        what = "no rows" if claims.empty else f"columns missing: {', '.join(missing)}"
        print(f"{path} is not a claims file written by the report ({what}); run `make report` again", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table(claims))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
