"""``conveyor run --processes N``: N competing copies of the same workers as child processes.

The parent only forwards SIGTERM/SIGINT and waits. A child that exits on its own stops the
others and the parent exits non-zero, so a process manager restarts the whole set rather
than it running short-handed unnoticed. With ``CONVEYOR_HTTP_PORT`` set, the parent serves
the group's one endpoint (``conveyor.workers.observability.group``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability import endpoint
from conveyor.workers.observability.group import GroupDirectory

log = get_logger("conveyor.processes")


def stop_all(processes: list[subprocess.Popen], *, timeout: float = 30) -> None:
    """SIGTERM every process still running, wait for each, SIGKILL what does not stop in time."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    processes.clear()


def run_copies(workers: list[str], *, processes: int, settings: Settings | None = None) -> int:
    group = GroupDirectory() if settings is not None and settings.http_port is not None else None
    env = {**os.environ, **(group.child_environment() if group else {})}
    children: list[subprocess.Popen] = []
    try:
        server = endpoint.serve_group(settings, group, children) if settings and group else None
        children += [subprocess.Popen([sys.executable, "-m", "conveyor", "run", *workers], env=env)
                     for _ in range(processes)]
        try:
            return _supervise(children, workers, processes=processes, group=group)
        finally:
            if server is not None:
                server.close()
    finally:
        if group is not None:
            group.remove()


def _supervise(children: list[subprocess.Popen], workers: list[str], *, processes: int,
               group: GroupDirectory | None) -> int:
    stopping = False
    reaped: set[int] = set()

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    log.info("processes_started", processes=processes, workers=workers or "all",
             pids=[c.pid for c in children])
    while any(c.poll() is None for c in children):
        if not stopping and any(c.poll() is not None for c in children):
            log.error("process_exited", codes=[c.returncode for c in children])
            forward(signal.SIGTERM, None)
        for child in children:
            if group is not None and child.returncode is not None and child.pid not in reaped:
                group.child_exited(child.pid)
                reaped.add(child.pid)
        time.sleep(0.2)
    codes = [c.returncode for c in children]
    return 0 if stopping and all(code == 0 for code in codes) else max(1, *[abs(c) for c in codes])
