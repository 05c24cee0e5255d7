"""How a report file is recognised as one (the writing rule, interp/outputs.py): the `generator` meta tag its
template writes in the head; reports from before the tag are recognised by the template's exact CSP line."""
from __future__ import annotations

from pathlib import Path

from interp.outputs import check_file_target, file_has_marker

MARKER = b'<meta name="generator" content="interp report">'
LEGACY = (b'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; script-src \'unsafe-inline\' '
          b'\'unsafe-eval\'; style-src \'unsafe-inline\'; img-src data:; font-src data:">')


def is_report(path: Path) -> bool:
    """Whether the file at `path` is an HTML report written by interp."""
    return file_has_marker(path, MARKER) or file_has_marker(path, LEGACY, head=1024)


def check_report_target(path: str | Path, force: bool = False) -> bool:
    """May a report be written to `path`? Absent: yes; an earlier report: only with `force`; anything else
    (a user's file, a folder): OutputRefused, one line naming it."""
    return check_file_target(path, is_report, "interp HTML report", force)
