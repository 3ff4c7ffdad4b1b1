"""The release before a change, as real code: its tree extracted from git history with
``git archive``, its workers run as processes that import that tree instead of the editable
install, and what they logged read back (``tests/integration/test_expand_contract.py``).

The tree holds ``conveyor/`` (its relative symlinks resolve inside the tree) and the folders
they point at; ``PYTHONPATH`` names the tree and the processes start in it, so neither the
repository's checkout (the current directory) nor the editable install is found first.
A repository without that commit (a shallow clone) fails the test that needs it, saying so:
without the previous release there is no blue-green to check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.workers.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# The release before the tracking_number -> tracking_reference change (V015-V017).
PREVIOUS_RELEASE = "ef32195bab2b41ed618c525e7bbdc538f8b8d00b"
TREE = ("conveyor", "workers", "db", "schemas", "devservices")
WHERE_FROM = ("import json, conveyor, conveyor.db.fulfilment as f; "
              "print(json.dumps({'conveyor': conveyor.__file__, 'fulfilment': f.__file__}))")


def extract_release(destination: Path, commit: str = PREVIOUS_RELEASE) -> Path:
    """The release's tree under ``destination`` (created); fails the test if git or the commit is missing."""
    _require_commit(commit)
    destination.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit, *TREE],
                         capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(destination)], input=tar.stdout, check=True)
    return destination


def _require_commit(commit: str) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is not installed: the previous release's code comes from the repository's history",
                    pytrace=False)
    probe = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        shallow = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
                                 capture_output=True, text=True).stdout.strip() == "true"
        why = "the clone is shallow" if shallow else (probe.stderr.strip() or "no git repository")
        pytest.fail(f"the previous release {commit} is not in {ROOT}'s git history ({why}): this test runs "
                    f"that release's workers beside the current ones; fetch it (`git fetch --unshallow`, "
                    f"or `git fetch origin {commit}`)", pytrace=False)


def release_env(tree: Path, settings: Settings | None = None) -> dict[str, str]:
    """The environment of a process of the release: its tree first on the path, the test's services."""
    env = {**os.environ, "PYTHONPATH": str(tree), "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "INFO",
           "CONVEYOR_RETRY_DELAYS": "1"}
    if settings is not None:
        env |= {"CONVEYOR_DATABASE_URL": settings.database_url, "CONVEYOR_AMQP_URL": settings.amqp_url}
    return env


def imported_from(tree: Path) -> dict[str, str]:
    """Which files a process of the release imports ``conveyor`` and ``conveyor.db.fulfilment`` from."""
    found = subprocess.run([sys.executable, "-c", WHERE_FROM], env=release_env(tree), cwd=tree,
                           capture_output=True, text=True, check=True)
    return json.loads(found.stdout)


def release_worker(tree: Path, settings: Settings, *names: str, log_path: Path) -> subprocess.Popen:
    """``conveyor run NAMES...`` of the release, as a process logging JSON lines to ``log_path``."""
    out = open(log_path, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "conveyor", "run", *names], env=release_env(tree, settings),
                                cwd=tree, stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()  # the child has its own copy


def log_records(log_path: Path, event: str) -> list[dict]:
    """The JSON log records of one ``event`` (``message_processed``, ``message_failed``, ...)."""
    records = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a traceback or a line of the interpreter's: not a record
        if isinstance(record, dict) and record.get("event") == event:
            records.append(record)
    return records
