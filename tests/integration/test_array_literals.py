"""Array parameters travel as literals (conveyor.db.arrays): every string arrives as it was,
whatever it holds, on real PostgreSQL."""

from __future__ import annotations

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.db.arrays import int_array, text_array

AWKWARD = ['a"b', "c\\d", "e,f", "{x}", " sp ", "NULL", "", "'", "ü€😀", '\\"', "}", "a b"]


def test_awkward_strings_and_extreme_integers_round_trip(admin_database_url):
    with psycopg.connect(admin_database_url, autocommit=True) as conn:
        texts, ints = conn.execute("SELECT %(t)s::text[], %(i)s::bigint[]",
                                   {"t": text_array(AWKWARD), "i": int_array([-(2 ** 63), 0, 2 ** 63 - 1])}).fetchone()
    assert texts == AWKWARD and ints == [-(2 ** 63), 0, 2 ** 63 - 1]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
                max_size=20))
def test_any_list_of_strings_round_trips(admin_database_url, values):
    with psycopg.connect(admin_database_url, autocommit=True) as conn:
        assert conn.execute("SELECT %(t)s::text[]", {"t": text_array(values)}).fetchone()[0] == values
