"""The backup wrapper's pure decisions (``conveyor.db.backup``): how a pgBackRest failure is
classified, which backup serves a target, where the archived WAL has a gap."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from conveyor.db.backup import classify
from conveyor.db.backup.repository import BackupSet, StanzaInfo, WalFile, backup_for, gaps, segment_name

EPOCH = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("code", "stderr", "kind"), [
    (64, "ERROR: [064]: unable to write 'x': [28] No space left on device", "repository_full"),
    (56, "WARN: unable to check pg1: [DbConnectError] ...\nERROR: [056]: unable to find primary cluster",
     "database_unreachable"),
    (82, "ERROR: [082]: WAL segment 000000010000000000000007 was not archived before the 10000ms timeout",
     "archiving_failed"),
    (50, "ERROR: [050]: unable to acquire lock", "busy"),
    (40, "ERROR: [040]: unable to restore to path '/x' because it contains files", "restore_refused"),
    (75, "ERROR: [075]: unable to find backup set with stop time less than '2020-01-01'", "target_outside_backups"),
    (55, "ERROR: [055]: unable to load info file '/r/archive/conveyor/archive.info'", "stanza_not_found"),
    (41, "ERROR: [041]: unable to load info file: [13] Permission denied", "repository_unreachable"),
    (32, "ERROR: [032]: 'x' is not valid for 'type' option", "configuration"),
    (125, "ERROR: [125]: something new", "failed"),
])
def test_a_pgbackrest_failure_is_classified_by_its_code_and_message(code, stderr, kind):
    assert classify("backup", code, stderr).kind == kind


def test_the_message_carries_the_os_cause_and_the_hints():
    error = classify("check", 41, "ERROR: [041]: unable to load info file 'a':\n"
                                  "       FileOpenError: unable to open file 'a' for read: [13] Permission denied\n"
                                  "       HINT: has a stanza-create been performed?")
    assert str(error).endswith("(Permission denied)") and error.hint == "has a stanza-create been performed?"


def _backup(label: str, stopped_s: int, wal_start: str) -> BackupSet:
    at = EPOCH.replace(second=stopped_s)
    return BackupSet(label, "full", at, at, wal_start, wal_start, 1, 1, None)


def test_a_target_is_served_by_the_newest_backup_that_ended_in_an_earlier_second():
    info = StanzaInfo("conveyor", 0, "ok", [_backup("a", 10, "x"), _backup("b", 20, "y")])
    assert backup_for(info, EPOCH.replace(second=20, microsecond=900_000)).label == "a"  # same second: not b
    assert backup_for(info, EPOCH.replace(second=21)).label == "b"
    assert backup_for(info, EPOCH.replace(second=10)) is None


def _wal(timeline: int, number: int) -> WalFile:
    return WalFile(segment_name(timeline, number), "p", EPOCH)


def test_gaps_are_the_segments_missing_after_the_backup_across_timelines():
    archived = [_wal(1, n) for n in (2, 3, 5, 6)] + [_wal(2, 6), _wal(2, 7)]
    assert gaps(archived, start=segment_name(1, 2)) == [segment_name(1, 4)]
    assert gaps(archived, start=segment_name(1, 5)) == []
    assert gaps([_wal(1, 0xFF), _wal(1, 0x100)], start=segment_name(1, 0xFF)) == []  # across an xlogid
