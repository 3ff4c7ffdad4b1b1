"""Child processes of our own servers: free loopback ports, waiting for readiness, dying with
the parent, stopping a process group, reading a server log, sweeping stale temp directories."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping

from conveyor.devservices.base import TEMP_PREFIX, DevServicesError


def _sweep_stale_temp_dirs() -> None:
    """Delete temp dirs left by devservices processes that no longer exist."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{TEMP_PREFIX}*-*")):
        match = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", os.path.basename(path))
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now, chosen below the kernel's ephemeral range
    so that outgoing connections cannot take them before our servers bind them."""
    low = _ephemeral_port_floor()
    picked: list[int] = []
    candidates = random.SystemRandom().sample(range(20000, low), min(200, low - 20000)) if low > 20200 else []
    for port in candidates:
        if len(picked) == count:
            break
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        picked.append(port)
    while len(picked) < count:  # odd port range: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in picked:
            picked.append(port)
    return picked


def _ephemeral_port_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_until(predicate: Callable[[], bool], timeout: float, *, alive: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if alive is not None and alive.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """preexec_fn: deliver ``sig`` to the child when this thread dies (Linux; else None).

    prctl is looked up here, in the parent: the child only makes the call. It runs after
    Popen's setuid, which would otherwise clear the setting.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)

    return preexec


def _stop_process(proc: subprocess.Popen, sig: signal.Signals, *, grace: float) -> None:
    """Signal our own child (a session leader), then SIGKILL its process group after ``grace`` s."""
    proc.send_signal(sig)  # a no-op if it has already exited and been reaped
    if proc.returncode is None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _exited(proc):
            time.sleep(0.02)
        # Not reaped yet, so its pid still names only the group it leads (helpers included).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _exited(proc: subprocess.Popen) -> bool:
    """Has the child exited? Leaves it unreaped (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _tail(path: str, lines: int = 15) -> str:
    """The lines of a server log that say what went wrong (else its last lines)."""
    try:
        with open(path, errors="replace") as handle:
            text = handle.readlines()
    except OSError:
        return "(no log)"
    telling = [line for line in text if re.search(r"Error|error in|FATAL|eaddrinuse|already in use|could not", line)]
    return "".join(dict.fromkeys(telling[:lines]) or text[-lines:])


def _run_checked(argv: list[str], *, env: Mapping[str, str] | None = None, what: str, timeout: float = 60) -> str:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevServicesError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise DevServicesError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def _still_running(proc: subprocess.Popen, settle: float = 0.05) -> bool:
    time.sleep(settle)  # a server that lost the race for its port exits at once
    return proc.poll() is None
