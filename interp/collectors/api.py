"""`interp.collect`: the one entry point that runs collectors over data, in memory or at scale."""
from __future__ import annotations

from interp.collectors.results import Results


def collect(model, data, collectors=None, batch_size: int = 8, max_tokens: int | None = None,
            exclude_first: bool = False, overflow: str = "split", progress: bool = True, **scale) -> Results:
    """Run `collectors` (default: every forward-only collector) over `data` and return their tables.

    data: texts, token-id lists, a [n, t] token tensor, (tokens, mask), an iterator of texts or a TokenFile.
    The options of `interp.collectors.driver.collect` apply; `scale` takes those of
    `interp.collectors.sharded.collect_sharded` (distributed, device, dtype, state_dir, checkpoint_every,
    out, force), which also handles streams and resumable runs.
    """
    from interp.collectors.driver import collect as collect_in_memory
    from interp.collectors.sharded import SCALE_OPTIONS, collect_sharded
    from interp.collectors.stream import is_stream
    unknown = scale.keys() - SCALE_OPTIONS
    if unknown:
        raise TypeError(f"interp.collect got unknown option(s) {', '.join(sorted(unknown))}; "
                        f"see help(interp.collect) for the options it takes")
    args = (model, data, collectors, batch_size, max_tokens, exclude_first, overflow, progress)
    if scale or is_stream(data):  # distributed / device / streaming / resumable
        return collect_sharded(*args, **scale)
    return collect_in_memory(*args)
