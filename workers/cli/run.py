"""``conveyor run [WORKER ...] [--processes N]``: the workers, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import command
from conveyor.workers.roles import ALL


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run workers until SIGTERM/SIGINT",
        description=f"Run workers in this process (default: all of {', '.join(ALL)}). Nothing is consumed "
                    "until the database's migrations are applied (safe start). With CONVEYOR_HTTP_PORT set, "
                    "the process (or, with --processes, the group) serves /metrics (Prometheus), /healthz "
                    "(liveness) and /readyz (readiness) on that port; see docs/operations.md.")
    p.add_argument("workers", nargs="*", metavar="WORKER", help=f"one or more of: {', '.join(ALL)}")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="run N competing copies as child processes (default 1); use about one per core")


@command("run")
def run(args: argparse.Namespace) -> int:
    from conveyor.workers.bootstrap import check_names
    from conveyor.workers.bootstrap import run as run_workers
    from conveyor.workers.runtime.processes import run_copies

    if args.processes > 1:
        check_names(args.workers)
        return run_copies(args.workers, processes=args.processes, settings=args.settings)
    return run_workers(args.workers, args.settings)

