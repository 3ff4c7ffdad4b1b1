"""Publishing a claimed batch in order: pure logic, no pika, no database.

Rows sharing an ordering key (a SKU, an order) must reach every queue in id order, even
when the broker refuses one of them (a nack: e.g. a partner's queue with
``x-overflow: reject-publish`` is full, and the next message of the same SKU may find
room again). So a batch goes out in *waves*: wave n holds the n-th row of every key, and
a wave starts only when the broker has confirmed the one before. A refused row holds
back the rest of its key; those rows stay pending and go out, in order, with a later
batch. Rows of different keys go out together, so a batch of many SKUs takes a few
confirm round trips, and one SKU gets at most one change per round trip (~1 ms here).

``per_key`` > 1 lets that many rows of a key share a wave: faster for a hot SKU, but a
queue that refused a row may then receive a later row of its key first (the version
shows it). Rows behind a refused row are never settled, so they go out again after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

Outcome = Literal["ack", "nack", "returned"]


class Ordered(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def message_id(self) -> str: ...

    @property
    def ordering_key(self) -> str | None: ...



@dataclass
class BatchResult:
    confirmed: list[int] = field(default_factory=list)  # acked: settle these
    refused: list[tuple[int, Outcome]] = field(default_factory=list)  # nacked or unroutable
    held_back: list[int] = field(default_factory=list)  # behind a refused row of their key, or past max_waves


Row = TypeVar("Row", bound=Ordered)


def waves(rows: Sequence[Row], *, per_key: int = 1) -> list[list[Row]]:
    """Split rows (in id order) so that wave n holds rows n*per_key .. (n+1)*per_key-1 of
    each ordering key; rows without a key are ordered with nothing and go in the first."""
    seen: dict[str, int] = {}
    result: list[list[Row]] = []
    for row in rows:
        n = 0
        if row.ordering_key is not None:
            count = seen.get(row.ordering_key, 0)
            seen[row.ordering_key] = count + 1
            n = count // per_key
        while n >= len(result):
            result.append([])
        result[n].append(row)
    return result


def publish_in_order(rows: Sequence[Row], publish: Callable[[Sequence[Row]], dict[str, Outcome]],
                     *, per_key: int = 1, max_waves: int | None = None) -> BatchResult:
    """Publish rows wave by wave; ``publish`` sends a wave and returns each message id's
    confirm outcome (it raises when the connection is lost: then nothing is settled).
    Rows beyond ``max_waves`` stay pending, so one hot key cannot hold a batch for long."""
    result = BatchResult()
    blocked: set[str] = set()
    for number, wave in enumerate(waves(rows, per_key=per_key)):
        if max_waves is not None and number >= max_waves:
            result.held_back += [row.id for row in wave]
            continue
        ready = [row for row in wave if row.ordering_key not in blocked]  # None is never blocked
        result.held_back += [row.id for row in wave if row.ordering_key in blocked]
        if not ready:
            continue
        outcomes = publish(ready)
        for row in ready:
            if row.ordering_key in blocked:  # published behind a refused row of its key
                result.held_back.append(row.id)
            elif outcomes[row.message_id] == "ack":
                result.confirmed.append(row.id)
            else:
                result.refused.append((row.id, outcomes[row.message_id]))
                if row.ordering_key is not None:
                    blocked.add(row.ordering_key)
    return result


class Cooldown:
    """Ordering keys (and keyless rows, by id) whose message the broker just refused: left
    out of the next claims for ``seconds``, so a partner's full queue neither holds up the
    other keys nor gets a tight loop of retries (each one a repeat for the queues that did
    accept the message)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._keys: dict[str, float] = {}
        self._ids: dict[int, float] = {}

    def refused(self, rows: Sequence[Ordered], *, now: float) -> None:
        for row in rows:
            if row.ordering_key is None:
                self._ids[row.id] = now + self.seconds
            else:
                self._keys[row.ordering_key] = now + self.seconds

    def active(self, *, now: float) -> tuple[set[str], set[int]]:
        """The keys and ids still cooling down."""
        self._keys = {key: until for key, until in self._keys.items() if until > now}
        self._ids = {row_id: until for row_id, until in self._ids.items() if until > now}
        return set(self._keys), set(self._ids)
