"""Lines to stdout or stderr that stay whole when processes share them (the main job's workers, the zoo's trainers).

print() writes a line and its newline in two writes, so another process's line can land between them; one write of
the line with its newline is kept whole by a pipe (up to 4 KB, PIPE_BUF) and by a terminal.
"""
from __future__ import annotations

import sys
from typing import TextIO


def say(line: str, file: TextIO | None = None) -> None:
    """Print `line` and its newline to `file` (stdout by default) in one write, then flush."""
    f = sys.stdout if file is None else file
    f.write(line + "\n")
    f.flush()
