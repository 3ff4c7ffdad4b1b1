"""Replay: put dead letters back where they were first published, safely.

Per message: publish the original body untouched, with its ``message_id`` and other
properties, to the original exchange and routing key (or ``--to-queue``), ``mandatory``
and confirmed; then write the audit row; only then ack the DLQ copy. A crash between
the confirm and the ack leaves the message in both places, and the inbox absorbs the
second copy; a crash before the confirm leaves it in the DLQ only. The failure headers
move under ``x-conveyor-previous-*`` (the attempt count starts again) and
``x-conveyor-replayed-at``/``-by``/``-replay-id`` mark the copy.

The canary (``--stop-after-failures N``) watches the same DLQ session for copies of
*this* run (same replay id) dead-lettered again, and stops replaying after N.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from pika.spec import BasicProperties

from conveyor.db.connection import connect
from conveyor.db.inbox import Inbox
from conveyor.workers.config import Settings
from conveyor.workers.dlq.audit import AuditTrail
from conveyor.workers.dlq.letters import H_REPLAY_ID, H_REPLAYED_AT, H_REPLAYED_BY, PREVIOUS_PREFIX, DeadLetter
from conveyor.workers.dlq.reader import DlqSession, Held, PublishRefused
from conveyor.workers.dlq.selection import Selection
from conveyor.workers.runtime import envelope as h

# Failure headers that describe the last failure: kept under x-conveyor-previous-*.
FAILURE_HEADERS = (h.H_ATTEMPTS, h.H_FIRST_FAILURE, h.H_LAST_FAILURE, h.H_ERROR_CLASS, h.H_ERROR_CODE,
                   h.H_ERROR_MESSAGE, h.H_TRACEBACK, h.H_REASON)
# Headers the broker adds; a replayed copy starts without them.
BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-exchange", "x-first-death-queue",
                  "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                  "x-last-death-reason")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


class Progress(Protocol):
    """What a replay reports its progress to (a progress bar)."""

    def advance(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReplayOptions:
    to_queue: str | None = None
    rate: float | None = None                  # messages per second
    stop_after_failures: int | None = None
    canary_wait: float = 5.0                   # seconds to keep watching after the last publish


@dataclass
class ReplayReport:
    run_id: str
    queue: str
    operator: str
    scanned: int = 0
    matched: int = 0
    replayed: list[str | None] = field(default_factory=list)
    failed_again: list[str | None] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)     # why a matched message was left in the DLQ
    missing_ids: list[str] = field(default_factory=list)
    stopped: str | None = None                           # why the replay ended early

    @property
    def outcome(self) -> str:
        if self.stopped and self.stopped.startswith("canary"):
            return "stopped"
        return "failed" if self.stopped or self.skipped or self.failed_again else "ok"


# -- pure parts ------------------------------------------------------------------------------

def parse_rate(text: str) -> float:
    """``"20"`` or ``"20/s"`` → 20.0 per second; ``"30/m"`` → 0.5; ``"/h"`` too."""
    match = _RATE.match(text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"invalid rate {text!r}: use e.g. 20/s, 30/m (more than 0)")
    return float(match[1]) / _PER[match[2] or "s"]


class Pacer:
    """How long to wait before the next publish to keep ``per_second``; 0 when unlimited."""

    def __init__(self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock = clock
        self._next_at: float | None = None

    def delay(self) -> float:
        now = self.clock()
        if self._next_at is None or self._next_at < now:
            self._next_at = now
        wait = self._next_at - now
        self._next_at += self.interval
        return wait


def target_for(letter: DeadLetter, *, to_queue: str | None) -> tuple[str, str] | None:
    """(exchange, routing key) to publish to; None when the letter does not say where it came from."""
    if to_queue:
        return "", to_queue
    if letter.exchange is None or letter.routing_key is None:  # not routable
        return None
    return letter.exchange, letter.routing_key


def describe_target(target: tuple[str, str]) -> str:
    exchange, routing_key = target
    return f"queue {routing_key}" if exchange == "" else f"{exchange} -> {routing_key}"


def replay_properties(properties: BasicProperties, letter: DeadLetter, *, operator: str, run_id: str,
                      now: datetime) -> BasicProperties:
    """The original properties for a fresh attempt: same message_id, body untouched elsewhere."""
    headers = {k: v for k, v in (properties.headers or {}).items()
               if k not in BROKER_HEADERS and not k.startswith(PREVIOUS_PREFIX)}
    for name in FAILURE_HEADERS:
        if name in headers:
            headers[previous_header(name)] = headers.pop(name)
    if letter.error_class == "BrokerDeadLetter":
        headers[previous_header(h.H_REASON)] = letter.reason
    _keep_origin(headers, letter)
    headers.update({H_REPLAYED_AT: now.isoformat(), H_REPLAYED_BY: operator, H_REPLAY_ID: run_id})
    return BasicProperties(
        content_type=properties.content_type, content_encoding=properties.content_encoding,
        headers=headers, delivery_mode=2, priority=properties.priority,
        correlation_id=properties.correlation_id, reply_to=properties.reply_to,
        expiration=properties.expiration, message_id=properties.message_id,
        timestamp=properties.timestamp, type=properties.type, app_id=properties.app_id,
        user_id=None,  # the broker checks user_id against the publishing user
    )


def previous_header(name: str) -> str:
    return PREVIOUS_PREFIX + name.removeprefix("x-conveyor-")


def _keep_origin(headers: dict, letter: DeadLetter) -> None:
    """The worker reads the message type from the original routing key, also via --to-queue."""
    for name, value in ((h.H_ORIGINAL_EXCHANGE, letter.exchange), (h.H_ORIGINAL_ROUTING_KEY, letter.routing_key),
                        (h.H_ORIGINAL_QUEUE, letter.original_queue)):
        if value is not None:
            headers.setdefault(name, value)


# -- the run ---------------------------------------------------------------------------------

class Replay:
    """One replay run over one DLQ session (see the module docstring for the guarantees)."""

    def __init__(self, session: DlqSession, trail: AuditTrail, selection: Selection, options: ReplayOptions,
                 *, progress: Progress | None = None) -> None:
        self.session, self.trail, self.selection, self.options = session, trail, selection, options
        self.progress = progress
        self.pacer = Pacer(options.rate)
        self.report = ReplayReport(str(trail.run_id), session.dlq, trail.operator)
        self._seen_ids: set[str] = set()

    def run(self) -> ReplayReport:
        for held in self.session.snapshot():
            self._scan(held)
            if self.report.stopped:
                break
        if self.options.stop_after_failures and not self.report.stopped and self.report.replayed:
            self._watch(self.options.canary_wait)
        self.report.missing_ids = sorted(self.selection.message_ids - self._seen_ids)
        return self.report

    def _scan(self, held: Held) -> None:
        self.report.scanned += 1
        if self.progress is not None:
            self.progress.advance()
        if held.letter.message_id:
            self._seen_ids.add(held.letter.message_id)
        if self.selection.matches(held.letter):
            self.report.matched += 1
            self._replay_one(held)
        self._observe_canary()

    def _replay_one(self, held: Held) -> None:
        target = target_for(held.letter, to_queue=self.options.to_queue)
        if target is None:
            self.report.skipped.append(f"{held.letter.message_id}: no original exchange/routing key "
                                       "in its headers (use --to-queue)")
            return
        self.session.sleep(self.pacer.delay())
        properties = replay_properties(held.properties, held.letter, operator=self.trail.operator,
                                       run_id=self.report.run_id, now=datetime.now(timezone.utc))
        try:
            self.session.publish(target[0], target[1], held.body, properties)
        except PublishRefused as error:
            self.report.stopped = f"publish refused: {error}"
            return
        # Recorded once confirmed, acked last: a crash in between leaves a duplicate, never a gap.
        self.trail.record(held.letter, "replayed", target=describe_target(target))
        self.session.ack(held)
        self.report.replayed.append(held.letter.message_id)

    def _observe_canary(self) -> None:
        for arrival in self.session.arrivals():
            if arrival.letter.replay_id == self.report.run_id:
                self.report.failed_again.append(arrival.letter.message_id)
        limit = self.options.stop_after_failures
        if limit and len(self.report.failed_again) >= limit and not self.report.stopped:
            self.report.stopped = (f"canary: {len(self.report.failed_again)} replayed message(s) "
                                   f"failed again (limit {limit})")

    def _watch(self, seconds: float) -> None:
        """Keep watching until each replayed message was processed (inbox) or failed again."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.report.stopped and not self._all_settled():
            self.session.sleep(0.2)
            self._observe_canary()

    def _all_settled(self) -> bool:
        failed = set(self.report.failed_again)
        waiting = [i for i in self.report.replayed if i is not None and i not in failed]
        settled = len(Inbox(self.trail.conn).seen(waiting)) if waiting else 0
        return settled + len(self.report.failed_again) >= len(self.report.replayed)


# -- dry run ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanItem:
    message_id: str | None
    order_id: str | None
    error_class: str
    verdict: str          # "replay", "already processed" or "cannot replay"
    detail: str


def plan_item(letter: DeadLetter, *, processed: set[str], to_queue: str | None,
              target_exists: Callable[[tuple[str, str]], bool]) -> PlanItem:
    """What a replay would do with this letter, without doing it."""
    target = target_for(letter, to_queue=to_queue)
    if target is None:
        return _plan(letter, "cannot replay", "no original exchange/routing key in its headers (use --to-queue)")
    if not target_exists(target):
        return _plan(letter, "cannot replay", f"{describe_target(target)} does not exist")
    if letter.message_id and letter.message_id in processed:
        return _plan(letter, "already processed",
                     f"the inbox has message_id {letter.message_id}: replaying to {describe_target(target)} "
                     "would have no effect")
    note = f"to {describe_target(target)}"
    if letter.error_class == "InvalidMessage":
        note += f"; but it is invalid as sent ({letter.error_code}) and will be dead-lettered again"
    return _plan(letter, "replay", note)


def _plan(letter: DeadLetter, verdict: str, detail: str) -> PlanItem:
    return PlanItem(letter.message_id, letter.order_id, letter.error_class, verdict, detail)


# -- entry points (the CLI calls these) ----------------------------------------------------------

@dataclass
class DryRun:
    queue: str
    scanned: int
    plan: list[PlanItem]
    missing_ids: list[str]


def run_replay(settings: Settings, dlq: str, selection: Selection, options: ReplayOptions, *,
               operator: str, progress_factory: Callable[[int], Progress] | None = None) -> ReplayReport:
    """Audit first (the database must answer), then the broker; the run is closed whatever happens."""
    with connect(settings.database_url, application_name="conveyor-dlq") as conn, \
            DlqSession(settings, dlq) as session:
        trail = AuditTrail(conn, "replay", dlq, operator, {**selection.describe(), **_described(options)})
        trail.start()
        progress = progress_factory(session.depth) if progress_factory else None
        replay = Replay(session, trail, selection, options, progress=progress)
        try:
            report = replay.run()
        except BaseException as error:
            _close_trail(trail, replay.report, interrupted=f"interrupted: {type(error).__name__}: {error}")
            raise
        finally:
            if progress is not None:
                progress.close()
        _close_trail(trail, report)
        return report


def dry_run(settings: Settings, dlq: str, selection: Selection, options: ReplayOptions) -> DryRun:
    """Changes nothing: reads the DLQ (handing everything back) and asks the inbox."""
    with connect(settings.database_url, application_name="conveyor-dlq") as conn, \
            DlqSession(settings, dlq) as session:
        letters = [held.letter for held in session.snapshot()]
        chosen = [letter for letter in letters if selection.matches(letter)]
        processed = _processed(conn, [letter.message_id for letter in chosen if letter.message_id])
        exists = _memo(lambda t: session.queue_exists(t[1]) if t[0] == "" else session.exchange_exists(t[0]))
        plan = [plan_item(letter, processed=processed, to_queue=options.to_queue, target_exists=exists)
                for letter in chosen]
    present = {letter.message_id for letter in letters}
    return DryRun(dlq, len(letters), plan, sorted(selection.message_ids - present))


def _processed(conn, message_ids: list[str], *, chunk: int = 5_000) -> set[str]:
    inbox = Inbox(conn)
    return set().union(*(inbox.seen(message_ids[i:i + chunk]) for i in range(0, len(message_ids), chunk)))


def _memo(fn: Callable[[tuple[str, str]], bool]) -> Callable[[tuple[str, str]], bool]:
    known: dict[tuple[str, str], bool] = {}
    return lambda key: known[key] if key in known else known.setdefault(key, fn(key))


def _described(options: ReplayOptions) -> dict:
    return {k: v for k, v in (("to_queue", options.to_queue), ("rate_per_s", options.rate),
                              ("stop_after_failures", options.stop_after_failures)) if v is not None}


def _close_trail(trail: AuditTrail, report: ReplayReport, *, interrupted: str | None = None) -> None:
    details = "; ".join(filter(None, [interrupted, report.stopped, *report.skipped[:5]])) or None
    trail.finish("failed" if interrupted else report.outcome, matched=report.matched,
                 succeeded=len(report.replayed), failed=len(report.failed_again) + len(report.skipped),
                 detail=details)
