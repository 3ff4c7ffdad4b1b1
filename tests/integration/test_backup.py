"""``conveyor backup`` against real pgBackRest and a PostgreSQL of our own (``tests/drill/server.py``):
each fault gives its error kind and its documented exit code (docs/backup.md), and a refused
restore writes nothing.

pgBackRest comes from tests/setup-tools.sh. Without it these tests skip on a developer's
machine and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conveyor.db import backup
from tests.drill.server import ArchivingPostgres, server_user

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if shutil.which("pgbackrest") is None:
    if os.environ.get("CI") == "true":
        pytest.fail("pgbackrest is not installed; CI must run tests/setup-tools.sh before the tests",
                    pytrace=False)
    pytest.skip("pgbackrest is not installed (tests/setup-tools.sh installs it)", allow_module_level=True)

pytestmark = pytest.mark.timeout(180)


def conveyor_backup(server: ArchivingPostgres, *args: str) -> tuple[int, dict]:
    """``conveyor backup ARGS --json`` against ``server``'s repository: (exit code, JSON)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}, **server.environment(),
           "CONVEYOR_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "conveyor", "backup", *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=150)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr}


def commit_rows(server: ArchivingPostgres, count: int) -> datetime:
    """Commit ``count`` rows in table t; returns the server's time after the commit."""
    with psycopg.connect(server.postgres.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, %s)", (count,))
        (now,) = conn.execute("SELECT clock_timestamp()").fetchone() or (None,)
    return now


@pytest.fixture(scope="module")
def backed_up() -> Iterator[ArchivingPostgres]:
    """A server with its stanza, a full backup and some archived commits after it."""
    with ArchivingPostgres() as server:
        backup.stanza_create(server.pgbackrest)
        backup.run_backup(server.pgbackrest, "full")
        time.sleep(1.1)  # a target must fall in a later second than the backup's end
        commit_rows(server, 10)
        backup.check(server.pgbackrest)
        yield server


@pytest.fixture
def fresh() -> Iterator[ArchivingPostgres]:
    """A server of this test's own (for faults that leave the repository damaged)."""
    with ArchivingPostgres() as server:
        backup.stanza_create(server.pgbackrest)
        yield server


def test_info_lists_the_backup_and_a_recovery_window_ending_at_the_newest_archived_commit(backed_up):
    # Given a full backup and commits after it, archived
    # When the DBA asks
    code, report = conveyor_backup(backed_up, "info")

    # Then exit 0, the backup is listed and the window runs from its end to the newest commit
    assert code == 0, report
    assert [b["type"] for b in report["backups"]] == ["full"]
    window = report["window"]
    assert window["latest_source"] == "commit" and window["gaps"] == []
    assert datetime.fromisoformat(window["earliest"]) < datetime.fromisoformat(window["latest"])


def test_a_missing_repository_is_unreachable_exit_3(backed_up):
    # Given the repository's path does not exist (an unmounted volume)
    backed_up.write_config(repo=os.path.join(backed_up.home, "not-mounted"))
    try:
        # When the DBA checks, asks for info, or backs up
        results = [conveyor_backup(backed_up, *args) for args in (["check"], ["info"], ["run", "--type", "diff"])]
    finally:
        backed_up.write_config()

    # Then each says the repository is unreachable, exit 3
    assert [(code, report["error"]) for code, report in results] == [(3, "repository_unreachable")] * 3, results
    assert "not-mounted does not exist" in results[0][1]["message"]


def test_an_unreadable_repository_is_unreachable_exit_3(backed_up):
    # Given the stanza's directories in the repository cannot be read by pgBackRest's user
    stanza_dirs = [os.path.join(backed_up.repo, kind, backed_up.stanza) for kind in ("backup", "archive")]
    for path in stanza_dirs:
        os.chmod(path, 0)
    try:
        code, report = conveyor_backup(backed_up, "run", "--type", "diff")
    finally:
        for path in stanza_dirs:
            os.chmod(path, 0o750)

    # Then the backup is refused as unreachable, exit 3, naming the cause
    assert (code, report["error"]) == (3, "repository_unreachable"), report
    assert "Permission denied" in report["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_repository_fails_the_backup_with_exit_3(fresh, tmp_path):
    # Given a repository on a 3 MiB file system (a full backup here needs about 4.5 MiB)
    # (pgBackRest names ENOSPC only when it retries; the repository's free space tells)
    small = fresh.make_directory("small-repo")
    user = server_user()
    owner = f",uid={user.pw_uid},gid={user.pw_gid}" if user else ""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=3m,mode=0750{owner}", "tmpfs", small], check=True)
    try:
        fresh.write_config(repo=small)
        backup.stanza_create(fresh.pgbackrest)
        code, report = conveyor_backup(fresh, "run", "--type", "full")
    finally:
        fresh.write_config()
        subprocess.run(["umount", "-l", small], check=False)

    # Then the backup fails: the repository is full, exit 3
    assert (code, report["error"]) == (3, "repository_full"), report
    assert "bytes free" in report["message"]


def test_restore_targets_outside_the_backups_are_refused_exit_4_and_nothing_is_written(backed_up):
    destination = os.path.join(backed_up.base, "never-written")
    before = datetime.now(timezone.utc) - timedelta(days=365)
    after = datetime.now(timezone.utc) + timedelta(hours=1)

    # When the target is before the first backup ended, or after the newest archived commit
    early = conveyor_backup(backed_up, "restore", "--target-time", before.isoformat(), "--to", destination)
    late = conveyor_backup(backed_up, "restore", "--target-time", after.isoformat(), "--to", destination)

    # Then both are refused as outside the backups, exit 4, and the destination never appears
    assert (early[0], early[1]["error"]) == (4, "target_outside_backups"), early
    assert "before the end of the oldest backup" in early[1]["message"]
    assert (late[0], late[1]["error"]) == (4, "target_outside_backups"), late
    assert "newest archived commit" in late[1]["message"]
    assert not os.path.exists(destination)


def test_bad_restore_requests_are_usage_errors_exit_2(backed_up):
    target = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()

    # When the target has no time zone, or the destination is a live data directory
    naive = conveyor_backup(backed_up, "restore", "--target-time", "2026-11-25T10:00:00",
                            "--to", os.path.join(backed_up.base, "x"))
    over = conveyor_backup(backed_up, "restore", "--target-time", target, "--to", backed_up.postgres.data_directory)

    # Then both exit 2 and the data directory is untouched
    assert naive[0] == 2, naive
    assert (over[0], over[1]["error"]) == (2, "restore_refused"), over
    assert os.path.exists(os.path.join(backed_up.postgres.data_directory, "postmaster.pid"))


def test_a_segment_missing_from_the_archive_is_a_gap_exit_1_and_no_restore_crosses_it(fresh):
    # Given a full backup, then several archived segments of which one is deleted
    backup.run_backup(fresh.pgbackrest, "full")
    time.sleep(1.1)
    for _ in range(3):
        commit_rows(fresh, 100)
        with psycopg.connect(fresh.postgres.database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_switch_wal()")
    target = commit_rows(fresh, 1)
    backup.check(fresh.pgbackrest)
    info = backup.read_info(fresh.pgbackrest)
    segments = backup.wal_files(fresh.pgbackrest, info)
    removed = segments[-2]
    os.remove(os.path.join(fresh.repo, removed.path))

    # When the DBA checks, asks for info, or restores to a time after the gap
    checked = conveyor_backup(fresh, "check")
    listed = conveyor_backup(fresh, "info")
    destination = os.path.join(fresh.base, "never-written")
    restored = conveyor_backup(fresh, "restore", "--target-time", target.isoformat(), "--to", destination)

    # Then each names the missing segment, exit 1, and nothing is restored
    assert (checked[0], checked[1]["error"]) == (1, "archive_gap"), checked
    assert removed.name in checked[1]["message"]
    assert listed[0] == 1 and removed.name in listed[1]["window"]["gaps"], listed
    assert (restored[0], restored[1]["error"]) == (1, "archive_gap"), restored
    assert not os.path.exists(destination)


def test_failing_wal_archiving_fails_the_check_exit_1():
    # Given a server whose archive_command fails (pushes to a repository that does not exist)
    with ArchivingPostgres(archive_command="pgbackrest --stanza=conveyor --repo1-path=/nonexistent "
                                           "archive-push %p") as server:
        server.write_config(**{"archive-timeout": "3"})
        backup.stanza_create(server.pgbackrest)

        # When the DBA checks
        code, report = conveyor_backup(server, "check")

    # Then archiving is reported failing, exit 1
    assert (code, report["error"]) == (1, "archiving_failed"), report
    assert "was not archived" in report["message"]


def test_a_restore_to_a_time_brings_back_exactly_the_rows_committed_by_then(backed_up, tmp_path):
    # Given rows committed before T and after it, all archived
    time.sleep(1.1)
    target = commit_rows(backed_up, 5)
    with psycopg.connect(backed_up.postgres.database_url, autocommit=True) as conn:
        (at_target,) = conn.execute("SELECT count(*) FROM t").fetchone() or (0,)
    commit_rows(backed_up, 7)
    backup.check(backed_up.pgbackrest)
    destination = os.path.join(backed_up.workdir, "restored")

    # When restored to T and started there
    code, report = conveyor_backup(backed_up, "restore", "--target-time", target.isoformat(), "--to", destination)
    assert code == 0, report
    backed_up.postgres.stop(mode="fast")
    backed_up.postgres.use_data_directory(destination)
    backed_up.postgres.start()
    rows, in_recovery = _after_promotion(backed_up.postgres.database_url)

    # Then it holds the rows of T, not those committed after it, and accepts writes
    assert (rows, in_recovery) == (at_target, False)


def _after_promotion(url: str) -> tuple[int, bool]:
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.1)
        row = conn.execute("SELECT count(*), pg_is_in_recovery() FROM t").fetchone()
    assert row is not None
    return row[0], row[1]
