"""interp.console.say: a line and its newline in one write, so lines of processes sharing a stream stay whole."""
import os
import re
import subprocess
import sys

import pytest

from interp.console import say


class _Writes:
    """A stream that records each write call (what reaches the file descriptor as one write)."""

    def __init__(self):
        self.calls = []

    def write(self, s):
        self.calls.append(s)
        return len(s)

    def flush(self):
        pass


def test_say_is_one_write_with_the_newline_to_stdout_or_the_given_stream(monkeypatch):
    out, err = _Writes(), _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    say("pre-ln                 done: val loss 4.8120, 312 CPU s")
    say("pre-ln: failed, see runs/pre-ln/FAILED", file=err)
    assert out.calls == ["pre-ln                 done: val loss 4.8120, 312 CPU s\n"]
    assert err.calls == ["pre-ln: failed, see runs/pre-ln/FAILED\n"]


def test_each_main_job_progress_line_is_one_write(monkeypatch):
    from interp.report.main_job import Progress
    out = _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    log = Progress(t0=0.0)
    log("gemma-3-270m: loaded in 5.3 s")
    log("pre-ln: forward collectors on 2048 tokens in 0.3 s")
    assert [c.rstrip("\n") for c in out.calls] == log.lines and all(c.count("\n") == 1 for c in out.calls)


LINE = r"^\[\s*[\d.]+ s\] (w[01]): line (\d+) of a step in 0\.1 s$"
CODE = {"say": "from interp.console import say as emit\n",
        "progress": "from interp.report.main_job import Progress; emit = Progress(0.0)\n"}


@pytest.mark.parametrize("how", ["say", "progress"])
def test_lines_of_processes_sharing_one_pipe_stay_whole(how):
    """Two processes print 4000 lines each at once into one pipe (as the main job's workers and its main process
    do into the stdout that benchmarks/main_job.py parses): every line arrives whole, each process's in order."""
    line = "f'[ 1.0 s] {w}: line {i} of a step in 0.1 s'" if how == "say" else "f'{w}: line {i} of a step in 0.1 s'"
    code = "import sys\n" + CODE[how] + f"w = sys.argv[1]\nfor i in range(4000): emit({line})\n"
    r, w = os.pipe()
    procs = [subprocess.Popen([sys.executable, "-c", code, f"w{k}"], stdout=w) for k in range(2)]
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    seen = {"w0": [], "w1": []}
    for got in text.splitlines():
        m = re.match(LINE, got)
        assert m, f"a broken line: {got!r}"
        seen[m[1]].append(int(m[2]))
    assert seen == {"w0": list(range(4000)), "w1": list(range(4000))}
