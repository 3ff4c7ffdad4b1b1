"""``conveyor run --processes N``: N competing copies of the same workers as child processes.

The parent only forwards SIGTERM/SIGINT and waits. A child that exits on its own stops the
others and the parent exits non-zero, so a process manager restarts the whole set rather
than it running short-handed unnoticed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conveyor.workers.logging import get_logger

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


def run_copies(workers: list[str], *, processes: int) -> int:
    children = [subprocess.Popen([sys.executable, "-m", "conveyor", "run", *workers]) for _ in range(processes)]
    stopping = False

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
        time.sleep(0.2)
    codes = [c.returncode for c in children]
    return 0 if stopping and all(code == 0 for code in codes) else max(1, *[abs(c) for c in codes])
