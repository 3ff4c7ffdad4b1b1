"""The history of a run, as Jepsen keeps it: each client operation is recorded when it is
invoked and again when it completes, as

- ``ok``: it happened (the broker confirmed the publish, the database committed);
- ``fail``: it certainly did not happen (never sent, or refused before any effect);
- ``info``: unknown — it may or may not have happened (the connection died after the
  message was sent and before its confirm; the commit's answer was lost).

An operation still open when the run ends counts as ``info``. The checker reads only this
history and the final state; the nemesis records its faults here too (as ``info``), so a
verdict can be read next to what was done when.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

OpType = Literal["invoke", "ok", "fail", "info"]
COMPLETIONS = ("ok", "fail", "info")


@dataclass(frozen=True)
class Event:
    """One line of the history."""

    index: int
    op: int            # the operation this line belongs to (its invoke's index)
    process: str       # which client: "orders", "shop", "clerk", "nemesis"
    type: OpType
    f: str             # what: a routing key, "stock.adjust", "stock.set", a fault name
    value: dict
    time: float        # seconds since the history began


@dataclass(frozen=True)
class Operation:
    """An invocation with its completion (``info`` when it never completed)."""

    op: int
    process: str
    f: str
    outcome: str       # ok / fail / info
    value: dict        # the invoke's value updated with the completion's
    invoked_at: float
    completed_at: float | None


@dataclass
class History:
    """Thread-safe, append-only; optionally written through to a JSON-lines file."""

    path: str | None = None
    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)
    _open: dict[int, Event] = field(default_factory=dict, repr=False)
    _file: object = field(default=None, repr=False)

    def invoke(self, process: str, f: str, /, **value) -> int:
        return self._append(None, process, "invoke", f, value)

    def complete(self, op: int, outcome: OpType, /, **value) -> None:
        if outcome not in COMPLETIONS:
            raise ValueError(f"{outcome!r} is not a completion")
        with self._lock:
            invoked = self._open.pop(op, None)
        if invoked is None:
            raise ValueError(f"operation {op} is not open")
        self._append(op, invoked.process, outcome, invoked.f, value)

    def note(self, process: str, f: str, /, **value) -> None:
        """Something that happened at once (a fault applied or healed): an ``info`` line."""
        op = self.invoke(process, f, **value)
        self.complete(op, "info")

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _append(self, op: int | None, process: str, type_: OpType, f: str, value: dict) -> int:
        with self._lock:
            index = len(self.events)
            event = Event(index, index if op is None else op, process, type_, f, value, round(self.elapsed(), 4))
            self.events.append(event)
            if type_ == "invoke":
                self._open[index] = event
            if self.path:
                if self._file is None:
                    self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - closed by close()
                self._file.write(json.dumps(asdict(event), default=str) + "\n")
        return index

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def operations(events: list[Event]) -> list[Operation]:
    """Pair each invoke with its completion; one still open is ``info``."""
    invoked: dict[int, Event] = {}
    done: dict[int, Event] = {}
    for event in events:
        if event.type == "invoke":
            invoked[event.op] = event
        else:
            done[event.op] = event
    result = []
    for op, start in invoked.items():
        end = done.get(op)
        result.append(Operation(op, start.process, start.f, end.type if end else "info",
                                {**start.value, **(end.value if end else {})}, start.time,
                                end.time if end else None))
    return result


def counts(ops: list[Operation]) -> dict[str, dict[str, int]]:
    """How many operations of each kind ended how: {f: {ok: n, fail: n, info: n}}."""
    table: dict[str, Counter] = {}
    for op in ops:
        table.setdefault(op.f, Counter())[op.outcome] += 1
    return {f: dict(sorted(c.items())) for f, c in sorted(table.items())}


def load(path: str) -> list[Event]:
    with open(path) as handle:
        return [Event(**json.loads(line)) for line in handle if line.strip()]
