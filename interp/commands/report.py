"""`interp report`: build the HTML comparison report from saved results directories, or run the main job.

    interp report runs/pre-ln runs/smollm2 -o report/index.html    # from `interp collect` outputs
    interp report --default                                         # the main job (what `make report` runs)
    interp report --default --full                                  # + Qwen2.5-0.5B and MPNet (`make report-full`)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def run(args: argparse.Namespace) -> None:
    if args.full and not args.default:
        raise ValueError("--full adds the reach models to the main job: use it with --default")
    if args.small and not args.default:
        raise ValueError("--small makes the main job a smoke run: use it with --default")
    if args.default and args.results:
        raise ValueError("--default runs the main job on the shipped models and reads no results directories; "
                         "drop --default to build a report from them, or drop them")
    if args.default:
        from interp.report.main_job import run_default
        run_default(out=args.output, small=args.small, force=args.force, full=args.full)
        return
    from interp.report.marker import check_report_target
    check_report_target(args.output, args.force)  # before loading anything
    if not args.results:
        raise ValueError("no results directories given; pass one or more (from `interp collect`) or use --default")
    from interp.report.paths import results_dirs
    dirs = results_dirs(args.results)  # before pandas and the collectors are imported; each holds one model
    import interp.report
    t0 = time.perf_counter()
    path = interp.report.build(dirs, args.output, force=args.force, progress=True)  # folders: named as sources
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, {len(dirs)} model(s)) "
          f"generated in {time.perf_counter() - t0:.1f} s")


def register(sub) -> None:
    p = sub.add_parser("report", help="build the HTML comparison report (or run the main job with --default)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="*", type=Path, help="saved results directories (or folders of them)")
    p.add_argument("-o", "--output", type=Path, default=Path("report/index.html"), help="the HTML file to write")
    p.add_argument("--default", action="store_true",
                   help="run the main job: collect on the shipped zoo + packaged real models, then report")
    p.add_argument("--small", action="store_true", help="with --default: a few sequences only (a smoke run)")
    p.add_argument("--full", action="store_true",
                   help="with --default: also the reach models Qwen2.5-0.5B and MPNet (~130 CPU s more)")
    p.add_argument("--force", action="store_true", help="replace an earlier interp report at -o")
    p.set_defaults(func=run)
