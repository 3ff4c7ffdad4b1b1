"""Selections: targets (ids, group, all, age) and filters, and the times and durations they parse."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from conveyor.workers.dlq.fingerprint import fingerprint
from conveyor.workers.dlq.selection import Selection, parse_duration, parse_time
from tests.support.dlq import make_letter as letter

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
OLD = replace(letter("55P03: lock timeout", error_class="TransientDatabaseError"),
              message_id="old", failed_at=NOW - timedelta(days=3))
NEW = replace(letter("schema_violation: items: too short", error_class="InvalidMessage"),
              message_id="new", failed_at=NOW - timedelta(hours=1), routing_key="order.amended")
UNDATED = replace(letter("no headers", error_class="unknown"), message_id="undated", failed_at=None)
LETTERS = [OLD, NEW, UNDATED]


def chosen(selection: Selection) -> list[str]:
    return [x.message_id for x in LETTERS if selection.matches(x)]


@pytest.mark.parametrize(("selection", "expected"), [
    (Selection(), ["old", "new", "undated"]),
    (Selection(message_ids=frozenset({"new", "gone"})), ["new"]),
    (Selection(group=fingerprint(OLD)), ["old"]),
    (Selection(older_than=NOW - timedelta(days=1)), ["old"]),   # undated letters are never "old"
    (Selection(reason="SCHEMA_violation"), ["new"]),
    (Selection(reason="55P03"), ["old"]),
    (Selection(error_class="invalidmessage"), ["new"]),
    (Selection(routing_key="order.amended"), ["new"]),
    (Selection(since=NOW - timedelta(days=1)), ["new"]),
    (Selection(until=NOW - timedelta(days=1)), ["old"]),
    (Selection(everything=True, error_class="TransientDatabaseError"), ["old"]),
])
def test_a_selection_keeps_exactly_its_letters(selection, expected):
    assert chosen(selection) == expected


def test_only_a_named_target_lets_a_command_change_anything():
    assert not Selection(reason="x").targeted
    assert Selection(everything=True).targeted and Selection(group="abcdef").targeted


def test_describe_lists_what_was_asked_for_in_json_types():
    described = Selection(message_ids=frozenset({"b", "a"}), since=NOW).describe()

    assert described == {"message_ids": ["a", "b"], "since": "2026-11-25T12:00:00+00:00"}


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604_800),
                                               ("1w", 604_800), ("1h30m", 5400), ("0s", 0), (" 2H ", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "2 hours", "-1h", "1.5h", "h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", NOW - timedelta(hours=2)),
    ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=timezone.utc)),
    ("2026-11-25T10:00:00+02:00", datetime(2026, 11, 25, 8, tzinfo=timezone.utc)),
    ("2026-11-25", datetime(2026, 11, 25, tzinfo=timezone.utc)),   # no zone: UTC
])
def test_times_are_iso_or_an_age(text, expected):
    assert parse_time(text, now=NOW) == expected


def test_a_bad_time_is_refused():
    with pytest.raises(ValueError, match="invalid time"):
        parse_time("yesterday", now=NOW)
