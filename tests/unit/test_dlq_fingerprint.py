"""Fingerprints: one cause is one group, whatever ids, numbers, quoted values or line numbers vary."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

from conveyor.workers.dlq.fingerprint import (
    fingerprint,
    group_letters,
    matches_fingerprint,
    normalise_message,
    normalise_where,
)
from tests.support.dlq import make_letter as letter


@pytest.mark.parametrize(("message", "normalised"), [
    ("order 6f1c0c5e-8d1e-4a53-9a55-0e7f2d0b9a11 not found", "order <uuid> not found"),
    ("body is 400001 bytes, limit is 262144", "body is <n> bytes, limit is <n>"),
    ("items.0.quantity: too big", "items.<n>.quantity: too big"),
    ("key 'order_id' appears more than once", "key <str> appears more than once"),
    ('unknown sku "SKU-1" for tenant "t"', "unknown sku <str> for tenant <str>"),
    ("at 2026-11-25T10:00:00+00:00 we failed", "at <time> we failed"),
    ("digest deadbeef12345678 differs", "digest <hex> differs"),
    ("  many \n  spaces ", "many spaces"),
])
def test_variable_parts_of_a_message_become_placeholders(message, normalised):
    assert normalise_message(message) == normalised


def test_line_numbers_do_not_split_a_group_across_deploys():
    assert normalise_where("parsing.py:43 load_json") == "parsing.py load_json"
    assert fingerprint(letter(where="a.py:1 f")) == fingerprint(letter(where="a.py:99 f"))


def test_class_place_and_message_each_distinguish_groups():
    base = letter("lock timeout on 'A'")
    assert fingerprint(base) == fingerprint(letter("lock timeout on 'B'"))
    assert fingerprint(base) != fingerprint(replace(base, error_class="KeyError"))
    assert fingerprint(base) != fingerprint(replace(base, where="other.py:10 handle"))
    assert fingerprint(base) != fingerprint(letter("constraint violated"))


def test_groups_count_and_span_their_letters_largest_first():
    t = [datetime(2026, 11, day, tzinfo=timezone.utc) for day in (1, 2, 3)]
    letters = [letter("id 1", failed_at=t[1]), letter("id 2", failed_at=t[0], routing_key="order.amended"),
               letter("id 3", failed_at=t[2]), letter("other", error_class="KeyError", failed_at=t[1])]

    [big, small] = group_letters(letters)

    assert (big.count, big.first_seen, big.last_seen) == (3, t[0], t[2])
    assert big.routing_keys == ("order.amended", "order.created") and big.message == "id <n>"
    assert (small.count, small.error_class) == (1, "KeyError")


def test_a_group_is_named_by_its_fingerprint_or_a_prefix_of_six_or_more():
    fp = fingerprint(letter())
    assert matches_fingerprint(letter(), fp) and matches_fingerprint(letter(), fp[:6].upper())
    assert not matches_fingerprint(letter(), fp[:5])
    assert not matches_fingerprint(letter("different"), fp)
