"""``dlq stats``: per work queue, how many dead letters, and the oldest and newest failure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from conveyor.workers.config import Settings
from conveyor.workers.dlq.letters import DeadLetter
from conveyor.workers.dlq.reader import DlqBusy, DlqDeliveryLimit, DlqNotFound, DlqSession
from conveyor.workers.runtime.topology import dlq_name


def summarise(letters: Iterable[DeadLetter]) -> dict:
    count, stamps = 0, []
    for letter in letters:
        count += 1
        if letter.failed_at is not None:
            stamps.append(letter.failed_at)
    return {"dead_letters": count, "oldest_failure": min(stamps, default=None),
            "newest_failure": max(stamps, default=None)}


def queue_stats(settings: Settings, work_queue: str) -> dict:
    row: dict[str, object] = {"queue": work_queue, "dlq": dlq_name(work_queue)}
    try:
        with DlqSession(settings, dlq_name(work_queue)) as session:
            return {**row, "state": "ok", **summarise(h.letter for h in session.snapshot())}
    except DlqNotFound:
        return {**row, "state": "not declared", **_empty()}
    except DlqBusy:
        return {**row, "state": "busy (another dlq command)", **_empty()}
    except DlqDeliveryLimit as error:
        return {**row, "state": f"refused: {error.summary}", **_empty()}


def _empty() -> dict[str, int | datetime | None]:
    return {"dead_letters": None, "oldest_failure": None, "newest_failure": None}
