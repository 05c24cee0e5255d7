"""The kernels' on-disk numba cache against a change in another file: numba alone keeps a cached function built
against the old version of a kernel it calls from another file; `kernel_cache.refresh` drops that cache."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from interp.collectors import kernel_cache, kernels

pytestmark = pytest.mark.skipif(not kernels.ENABLED, reason="numba missing: nothing is cached")

CALLEE = "from numba import njit\n\n\n@njit(cache=True)\ndef g():\n    return {}\n"
CALLER = ("from numba import njit\n\nfrom pkg.a import g\n\n\n@njit(cache=True)\ndef f():\n    return g() + 10\n"
          "{}")
# kernel_cache loaded from its file alone (it imports nothing of interp): each subprocess then imports only numba
REFRESH = ("\n\nimport importlib.util\n\nspec = importlib.util.spec_from_file_location('kc', {!r})\n"
           "kc = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(kc)\n"
           "kc.refresh(globals(), ('pkg.a',))\n").format(kernel_cache.__file__)


def run(root: Path, module: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", f"from pkg.{module} import f; print(f())"], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def change_callee(root: Path, value: int) -> None:
    a = root / "pkg" / "a.py"
    a.write_text(CALLEE.format(value))
    st = a.stat()
    os.utime(a, (st.st_atime, st.st_mtime + 10))  # a later stamp even on a coarse clock


def test_a_changed_callee_reaches_the_cached_caller(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text(CALLEE.format(1))
    (tmp_path / "pkg" / "plain.py").write_text(CALLER.format(""))
    (tmp_path / "pkg" / "kept.py").write_text(CALLER.format(REFRESH))
    assert run(tmp_path, "plain") == 11 and run(tmp_path, "kept") == 11  # compiled and cached
    change_callee(tmp_path, 2)
    assert run(tmp_path, "plain") == 11  # numba alone: the caller's cached code still holds the old g
    assert run(tmp_path, "kept") == 12   # refresh dropped it: compiled again against the new g
    assert run(tmp_path, "kept") == 12   # and cached again, with the new stamp
    stamp = (tmp_path / "pkg" / "__pycache__" / "kept.deps").read_text()
    assert stamp == hashlib.sha256((tmp_path / "pkg" / "a.py").read_bytes()).hexdigest()  # the hash of the new a.py


def test_refresh_leaves_an_up_to_date_cache_alone():
    from interp.collectors import select_kernels
    deps = ("interp.collectors.kernels", "interp.collectors.simd")
    assert kernel_cache.refresh(vars(select_kernels), deps) is False  # the import already stamped it
