"""How the relay publishes a claimed batch: waves keep rows of one ordering key (a SKU, an
order) in id order, one confirm round apart; a refused row holds back the rest of its key."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.workers.services.relay.ordering import Cooldown, publish_in_order, waves


@dataclass(frozen=True)
class Row:
    id: int
    ordering_key: str | None

    @property
    def message_id(self) -> str:
        return f"m{self.id}"


def rows(*keys: str | None) -> list[Row]:
    return [Row(n, key) for n, key in enumerate(keys, start=1)]


class FakeBroker:
    """Records each wave; refuses the message ids it is told to."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.waves: list[list[int]] = []

    def publish(self, wave) -> dict[str, str]:
        self.waves.append([row.id for row in wave])
        return {row.message_id: self.refuse.get(row.message_id, "ack") for row in wave}


def test_the_nth_row_of_each_key_goes_in_the_nth_wave():
    batch = rows("A", "B", "A", None, "A", "B", None)

    assert [[r.id for r in w] for w in waves(batch)] == [[1, 2, 4, 7], [3, 6], [5]]


def test_a_batch_of_distinct_keys_is_one_wave():
    assert len(waves(rows("A", "B", "C", None))) == 1


def test_every_acked_row_is_confirmed_in_publish_order():
    broker = FakeBroker()

    result = publish_in_order(rows("A", "A", "B"), broker.publish)

    assert broker.waves == [[1, 3], [2]]
    assert sorted(result.confirmed) == [1, 2, 3]
    assert result.refused == [] and result.held_back == []


def test_a_nacked_row_holds_back_the_rest_of_its_key_but_not_other_keys():
    # Given the broker refuses A's first change
    broker = FakeBroker(refuse={"m1": "nack"})

    # When a batch with more changes of A and of B goes out
    result = publish_in_order(rows("A", "B", "A", "B", "A"), broker.publish)

    # Then A's later changes were never published (they stay pending, in order); B went on
    assert broker.waves == [[1, 2], [4]]
    assert result.refused == [(1, "nack")]
    assert result.held_back == [3, 5]
    assert result.confirmed == [2, 4]


def test_an_unroutable_row_counts_as_refused():
    result = publish_in_order(rows(None, None), FakeBroker(refuse={"m2": "returned"}).publish)

    assert result.confirmed == [1] and result.refused == [(2, "returned")]


def test_a_hot_key_gets_one_wave_per_change_up_to_max_waves_and_the_rest_waits():
    broker = FakeBroker()

    result = publish_in_order(rows("HOT", "HOT", "B", "HOT", "HOT"), broker.publish, max_waves=2)

    assert broker.waves == [[1, 3], [2]]
    assert result.confirmed == [1, 3, 2]
    assert result.held_back == [4, 5]  # still pending: the next batch starts with them


def test_with_two_per_key_in_flight_rows_behind_a_refused_one_are_not_settled():
    # Given two rows of a key may share a wave, and the broker refuses the first
    broker = FakeBroker(refuse={"m1": "nack"})

    # When
    result = publish_in_order(rows("A", "A", "A"), broker.publish, per_key=2)

    # Then the second was published (and acked) but is not settled: it goes out again after the first
    assert broker.waves == [[1, 2]]
    assert result.refused == [(1, "nack")]
    assert result.held_back == [2, 3]
    assert result.confirmed == []


def test_refused_keys_and_keyless_rows_cool_down_for_a_while():
    cooldown = Cooldown(seconds=1.0)

    cooldown.refused(rows("A", None), now=10.0)

    assert cooldown.active(now=10.5) == ({"A"}, {2})
    assert cooldown.active(now=11.0) == (set(), set())
