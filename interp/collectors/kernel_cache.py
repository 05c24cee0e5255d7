"""Keeping numba's on-disk cache of the kernels true to the code that calls across files.

numba keys the cached machine code of a function on that function's own source file. A kernel that calls a
kernel of another file, or reads a constant from it, is compiled together with what that file held at the time,
and a later change to that file alone leaves the cached code as it was. In a check, a cached `f` calling `g`
from another file kept returning `g`'s old value after `g`'s file changed. `refresh(globals(), deps)` at the
end of a kernel module drops the module's cached code whenever one of the files it depends on has changed. The
module's kernels then compile again on first use. A hash of those files is kept beside the cache.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def deps_digest(deps: tuple[str, ...]) -> str:
    """SHA-256 of the source files of the modules named in `deps` (each already imported), in order."""
    h = hashlib.sha256()
    for name in deps:
        h.update(Path(sys.modules[name].__file__).read_bytes())
    return h.hexdigest()


def refresh(namespace: dict, deps: tuple[str, ...]) -> bool:
    """Drop the on-disk cache of every cached numba function defined in the module of `namespace` (its
    `globals()`) when the sources of the modules named in `deps` differ from those its cache was written
    against; returns whether it dropped it. Without numba, a cache folder it can write, or numba's cache API
    (`Dispatcher._cache.cache_path` and `.flush()`), nothing is done: the cache then behaves as numba's own."""
    try:
        from numba.core.caching import FunctionCache
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    name = namespace["__name__"]
    own = [f for f in namespace.values() if isinstance(f, CPUDispatcher) and f.py_func.__module__ == name
           and isinstance(getattr(f, "_cache", None), FunctionCache)]
    if not own:
        return False
    try:
        stamp = Path(own[0]._cache.cache_path) / f"{name.rsplit('.', 1)[-1]}.deps"
        digest = deps_digest(deps)
        if stamp.is_file() and stamp.read_text() == digest:
            return False
        for f in own:
            f._cache.flush()  # an empty index: the next call compiles and saves anew
    except (OSError, AttributeError):  # a cache folder it cannot read, or a numba without this API
        return False
    try:
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, stamp)
    except OSError:  # not written: the next process drops the cache again, as it must
        pass
    return True
