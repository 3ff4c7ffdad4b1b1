"""Retention benchmark (issue 14): what removing the expired weeks of the inbox costs when it
is done Conveyor's way (dropping weekly partitions, V013) against the same rows DELETEd from
an unpartitioned copy and VACUUMed, whether intake notices either, and what the partitions
cost every claim meanwhile (quiet claims/s, partitioned / unpartitioned).

    make bench-retention BENCH_ARGS="--server both --json-out docs/retention-bench.json"
    python -m bench.retention_bench --rows 300000 --days 21 --server throwaway

Per server (``--server machine``: the one ``CONVEYOR_DATABASE_URL`` names, where this
machine runs autovacuum off; ``throwaway``: one started for the run from the installed
binaries the way ``bench.soak_bench`` does, with autovacuum on; ``both``: one after the other):

1. A fresh, migrated database. The migration's ``inbox_before_v013`` partition, where there is
   one (empty here: it would hold every day before the migration's week), is dropped first;
   then, for each of the ``--days`` past days (default 21), oldest first,
   ``maintenance.conveyor_ensure_partition`` creates the partition of the week (Monday to
   Sunday UTC, ``inbox_<monday YYYY_MM_DD>``) holding the day unless the week has it already
   (as the inbox's owner: the role the maintenance loop's SECURITY DEFINER functions create
   and drop partitions as) and one server-side ``INSERT ... SELECT ... generate_series`` adds
   ``--rows / --days`` rows of that day (``gen_random_uuid()`` ids, like the workers' message
   ids). The same rows, in the same physical order, go day by day into ``bench_flat.inbox``:
   the same columns, defaults, constraints and primary key ``(message_id, processed_on)``,
   not partitioned. Then ``VACUUM (ANALYZE)`` of both tables: with autovacuum off nothing else
   would ever set their visibility maps or gather their statistics.
2. **Partition drop.** ``CHECKPOINT`` (so the operation pays the full-page images a change to
   pages last written days ago pays), a probe process claims inbox ids (below) for
   ``--quiet-seconds``, then db/maintenance.py's own ``DROP_PARTITIONS`` statement, i.e.
   ``maintenance.conveyor_drop_partitions('messaging.inbox', 7 days, 500 ms)``, wrapped in
   ``EXPLAIN (ANALYZE, WAL, TIMING OFF)`` to read the WAL that statement itself wrote. It
   drops the weeks whose upper bound (the next Monday) is at or before now - 7 days: on a
   Monday, 21 days are three whole weeks and the older two go (14 days' rows); on another
   weekday the oldest loaded week is partial and 14 - weekday days' rows go.
3. **Baseline, same run.** ``CHECKPOINT``, the probe on ``bench_flat.inbox``, then
   ``DELETE FROM bench_flat.inbox WHERE processed_on < boundary``, the boundary being the
   newest dropped week's upper bound (not the 7-day cutoff: exactly the dropped weeks' rows),
   and the ``VACUUM`` it needs before the space can be reused (its WAL from ``VACUUM
   VERBOSE``'s own report).

For each operation: wall time, rows removed, the table's size before and after, WAL of its
own statements, and the server's WAL over its duration (``pg_wal_lsn_diff`` of
``pg_current_wal_lsn()``: this includes the probe's claims and, on the shared machine server,
every other database's writes). **The probe** does what a worker's batch does for its inbox
claim: ``conveyor.db.inbox.Inbox.claim_many`` (the ``CLAIM_MANY`` statement) of 20 new
random ids per transaction, in ``conveyor.db.connection.transaction`` on a connection from
``conveyor.db.connection.connect`` (search_path, lock and statement timeouts of a worker;
for the copy, ``bench_flat`` goes first on its search_path, so the statement text is the
same), back to back, in a process of its own. The "during" window runs from the
operation's start to ``--margin-seconds`` after its end (claims queued behind a lock finish
in it); the "quiet" window is the same length right before the operation (or the whole quiet
period, if that is shorter: both lengths are reported), the "after" window the same length
right after "during" (once the drop is done, claims probe fewer partitions); a transaction
belongs to the window it ended in. Per window: transactions, transactions/s, latency
p50/p99/max; per step, the max of the transactions that ran during any of it: over the drop,
how long intake waited for the ACCESS EXCLUSIVE lock the drop takes on the parent. **The
quiet windows' claims/s, partitioned over unpartitioned**, is what the partitions cost every
claim: each statement on the inbox locks every partition (and its index), and past 16 locks
a backend leaves the lock manager's fast path (daily partitions: 0.44-0.51x).

``--repeat`` runs it all that many times per server, each on a fresh database; the table
gives median (min–max), ratios taken within each repeat. Ratios are what to read (the
machine is shared; the throwaway server runs fsync=off, full_page_writes=off and
synchronous_commit=off, so its WAL and commit latency are lower).
Ctrl-C (or SIGTERM) drops the database and stops the throwaway server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg

from bench import soak_bench
from conveyor import devservices
from conveyor.db import maintenance
from conveyor.db.connection import SEARCH_PATH, connect, transaction
from conveyor.db.errors import DatabaseError
from conveyor.db.inbox import Inbox
from conveyor.db.migrate import ensure_partitions, migrate

PARENT = maintenance.INBOX  # messaging.inbox
RETENTION_S = 7 * 86_400    # the Plan's default inbox retention: '7 days'
LOCK_WAIT_MS = 500
FLAT = "bench_flat"         # schema of the unpartitioned copy, bench_flat.inbox
HANDLER = "orders"
IDS_PER_TRANSACTION = 20
SERVERS = {"machine": ("machine",), "throwaway": ("throwaway",), "both": ("machine", "throwaway")}
SETTINGS = ("server_version", "autovacuum", "fsync", "full_page_writes", "synchronous_commit", "wal_level",
            "shared_buffers", "max_wal_size", "maintenance_work_mem", "checkpoint_timeout")

PARTITION_OF = """
SELECT format('%%I.%%I', n.nspname, c.relname || '_' || r.suffix)
FROM maintenance.partition_sets s
CROSS JOIN LATERAL maintenance.conveyor_partition_range(s, %(d)s::date) r
JOIN pg_class c ON c.oid = s.parent JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE s.parent = %(p)s::regclass
"""
PARTITIONS = "SELECT count(*) FROM pg_inherits WHERE inhparent = %(p)s::regclass"  # the default included
FILL_DAY = """
INSERT INTO messaging.inbox (message_id, handler, processed_at, processed_on)
SELECT gen_random_uuid()::text, %(handler)s,
       (%(day)s::date)::timestamp AT TIME ZONE 'UTC' + random() * interval '1 day', %(day)s::date
FROM generate_series(1, %(rows)s)
"""
CREATE_FLAT = f"""
CREATE TABLE {FLAT}.inbox (LIKE messaging.inbox INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE,
                           PRIMARY KEY (message_id, processed_on))
"""
PARTITION_MAKER = "SELECT relowner::regrole::text FROM pg_class WHERE oid = %(p)s::regclass"
CUTOFF = "SELECT ((now() - make_interval(secs => %(retention)s)) AT TIME ZONE 'UTC')::date"
EXPIRED = ("SELECT partition::text, upper_bound FROM maintenance.conveyor_partitions_before("
           "%(parent)s::regclass, %(cutoff)s)")
TREE_SIZE = """
SELECT CASE c.relkind WHEN 'p' THEN (SELECT sum(pg_total_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t)
                      ELSE pg_total_relation_size(c.oid) END::bigint
FROM pg_class c WHERE c.oid = %(table)s::regclass
"""
DELETE_EXPIRED = f"DELETE FROM {FLAT}.inbox WHERE processed_on < %(boundary)s"  # the dropped weeks' rows
EXPLAIN = "EXPLAIN (ANALYZE, WAL, TIMING OFF, FORMAT JSON) "
LSN = "SELECT pg_current_wal_lsn()::text"
LSN_DIFF = "SELECT pg_wal_lsn_diff(%(b)s::pg_lsn, %(a)s::pg_lsn)::bigint"
VACUUM_WAL = re.compile(r"WAL usage: (\d+) records, (\d+) full page images, (\d+) bytes")
AUTOVACUUM_HERE = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                   "AND datname = current_database()")


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def scalar(conn: psycopg.Connection, query: str, params: dict | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------- the probe


def _claim_loop(database_url: str, schema: str | None, ready: Any, halt: Any, results: Any) -> None:
    """The probe process: back-to-back claims until ``halt``; sends what it recorded."""
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    starts: list[float] = []
    ends: list[float] = []
    failed: list[tuple[float, str]] = []
    not_new = claimed = 0
    error = None
    try:
        with connect(database_url, application_name="retention-probe") as conn:
            if schema:
                conn.execute(f"SET search_path = {schema}, {SEARCH_PATH}")
            inbox = Inbox(conn)
            warm_until = time.perf_counter() + 1.0  # connected, statement prepared, caches warm
            while not halt.is_set() and os.getppid() == parent:  # never outlive the benchmark
                ids = [str(uuid.uuid4()) for _ in range(IDS_PER_TRANSACTION)]
                started = time.perf_counter()
                try:
                    with transaction(conn):
                        fresh = inbox.claim_many(ids, handler=HANDLER)
                except DatabaseError as exc:  # e.g. a lock timeout: counted, the probe goes on
                    failed.append((started, type(exc).__name__))
                    continue
                ended = time.perf_counter()
                not_new += IDS_PER_TRANSACTION - len(fresh)
                claimed += len(fresh)
                if not ready.is_set():
                    if ended >= warm_until:
                        ready.set()
                    continue
                starts.append(started)
                ends.append(ended)
    except Exception as exc:  # reported by the phase
        error = repr(exc)
    finally:
        ready.set()
    results.send({"starts": starts, "ends": ends, "failed": failed, "not_new": not_new, "claimed": claimed,
                  "error": error})


class ClaimProbe:
    """Back-to-back inbox claims the way a worker's batch makes them, in a process of its own
    (a thread would share the GIL with the benchmark's timing of the operation); records each
    transaction's start and end (time.perf_counter(): CLOCK_MONOTONIC, one clock for both
    processes)."""

    def __init__(self, database_url: str, *, schema: str | None) -> None:
        context = multiprocessing.get_context("spawn")  # no copy of the benchmark's connections
        self.ready, self._halt = context.Event(), context.Event()
        self._results, sending = context.Pipe(duplex=False)
        self._process = context.Process(target=_claim_loop, name="retention-probe", daemon=True,
                                        args=(database_url, schema, self.ready, self._halt, sending))
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.failed: list[tuple[float, str]] = []
        self.not_new = 0
        self.claimed = 0  # ids the probe added to the table, warm-up included
        self.error: str | None = None

    def start(self) -> None:
        """Start the process; return once it is connected and warm (or has died)."""
        self._process.start()
        deadline = time.monotonic() + 60
        while not self.ready.wait(0.2) and self._process.is_alive() and time.monotonic() < deadline:
            pass

    def stop(self) -> None:
        self._halt.set()
        try:
            got = self._results.recv() if self._results.poll(60) else None
        except EOFError:
            got = None
        if got is None:
            self.error = f"the probe process sent no results (exit code {self._process.exitcode})"
        else:
            self.starts, self.ends, self.failed = got["starts"], got["ends"], got["failed"]
            self.not_new, self.claimed, self.error = got["not_new"], got["claimed"], got["error"]
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def window(self, lo: float, hi: float, *, overlapping: bool = False) -> dict:
        """The transactions that ended in [lo, hi) (or, ``overlapping``, ran during any of it):
        count, per second, latency p50/p99/max (ms)."""
        latencies = sorted((e - s) * 1000 for s, e in zip(self.starts, self.ends)
                           if (e >= lo and s < hi if overlapping else lo <= e < hi))
        failed = sum(1 for at, _ in self.failed if lo <= at < hi)
        seconds = max(hi - lo, 1e-9)
        return {"seconds": round(seconds, 3), "transactions": len(latencies), "failed": failed,
                "per_s": round(len(latencies) / seconds, 1), "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99), "max_ms": round(latencies[-1], 2) if latencies else None}


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))], 2)


# --------------------------------------------------------------------------- servers


@contextmanager
def database_server(kind: str) -> Iterator[devservices.Services]:
    """The machine's PostgreSQL (CONVEYOR_DATABASE_URL), or a throwaway one with autovacuum on."""
    if kind == "machine":
        url = os.environ.get(devservices.DATABASE_URL_ENV)
        if not url:
            raise SystemExit(f"--server machine needs {devservices.DATABASE_URL_ENV} (a role with CREATEDB)")
        yield devservices.Services(database_url=url, amqp_url="", source="environment")
        return
    nothing = devservices.Services(database_url="", amqp_url="", source="local-binaries")
    with soak_bench.database_server(nothing, "throwaway-autovacuum") as services:
        yield services


def server_settings(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%(n)s) ORDER BY name",
                        {"n": list(SETTINGS)}).fetchall()
    return dict(rows)


def wait_autovacuum_idle(conn: psycopg.Connection, *, timeout: float = 120) -> float:
    """Seconds waited until no autovacuum worker runs in this database."""
    started = time.monotonic()
    while scalar(conn, AUTOVACUUM_HERE) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


# --------------------------------------------------------------------------- loading


@dataclasses.dataclass(frozen=True)
class Options:
    rows: int
    days: int
    quiet_seconds: float
    margin_seconds: float
    repeat: int = 1


def load(conn: psycopg.Connection, opts: Options, label: str) -> dict:
    """The partitioned inbox (weekly partitions) and its unpartitioned copy, filled day by day
    with the same rows."""
    today = scalar(conn, "SELECT (now() AT TIME ZONE 'UTC')::date")
    maker = scalar(conn, PARTITION_MAKER, {"p": PARENT})
    conn.execute("DROP TABLE IF EXISTS messaging.inbox_before_v013")  # empty; it covers every day before this week
    conn.execute(f"CREATE SCHEMA {FLAT}")
    conn.execute(CREATE_FLAT)
    days = [today - timedelta(days=back) for back in range(opts.days, 0, -1)]
    per_day = [opts.rows // opts.days + (1 if i < opts.rows % opts.days else 0) for i in range(opts.days)]
    started = time.monotonic()
    timings = {"partitioned_s": 0.0, "copy_s": 0.0}
    weeks: dict[str, dict] = {}  # partition -> the loaded days and rows it holds
    for i, (day, rows) in enumerate(zip(days, per_day), 1):
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {maker}")
            created = scalar(conn, "SELECT maintenance.conveyor_ensure_partition(%(p)s::regclass, %(d)s)",
                             {"p": PARENT, "d": day})  # NULL once the week has its partition
        qualified = scalar(conn, PARTITION_OF, {"p": PARENT, "d": day})
        partition = scalar(conn, "SELECT to_regclass(%(t)s)::text", {"t": qualified})  # as regclass prints it
        if partition is None:
            raise RuntimeError(f"no partition {qualified} for {day} (created: {created})")
        t0 = time.monotonic()
        conn.execute(FILL_DAY, {"handler": HANDLER, "day": day, "rows": rows})
        t1 = time.monotonic()
        # the day's rows, in the order they went into the week's partition
        conn.execute(f"INSERT INTO {FLAT}.inbox SELECT * FROM {partition} WHERE processed_on = %(d)s", {"d": day})
        t2 = time.monotonic()
        timings["partitioned_s"] += t1 - t0
        timings["copy_s"] += t2 - t1
        week = weeks.setdefault(partition, {"days": [], "rows": 0})
        week["days"].append(day.isoformat())
        week["rows"] += rows
        log(f"[{label}] day {i}/{opts.days} {day}: {rows:,} rows into {partition}"
            f"{' (created)' if created else ''} in {t1 - t0:.1f} s, into the copy in {t2 - t1:.1f} s "
            f"({time.monotonic() - started:.0f} s so far)")
    vacuum = {}
    for table in (PARENT, f"{FLAT}.inbox"):  # autovacuum off: nothing else sets the visibility map or statistics
        t0 = time.monotonic()
        conn.execute(f"VACUUM (ANALYZE) {table}")
        vacuum[table] = round(time.monotonic() - t0, 2)
        log(f"[{label}] VACUUM (ANALYZE) {table}: {vacuum[table]} s")
    return {"rows": opts.rows, "days": [d.isoformat() for d in days], "rows_per_day": per_day, "weeks": weeks,
            "fill_partitioned_s": round(timings["partitioned_s"], 2), "fill_copy_s": round(timings["copy_s"], 2),
            "vacuum_analyze_s": vacuum, "partition_owner": maker,
            "size_partitioned_bytes": scalar(conn, TREE_SIZE, {"table": PARENT}),
            "size_copy_bytes": scalar(conn, TREE_SIZE, {"table": f"{FLAT}.inbox"}),
            "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------- the operations


def explain_wal(conn: psycopg.Connection, statement: str, params: dict) -> tuple[dict, float]:
    """Run ``statement`` under EXPLAIN (ANALYZE, WAL, TIMING OFF): (its top plan node, the
    executor's own milliseconds: without parsing, planning and the commit)."""
    plan = scalar(conn, EXPLAIN + statement, params)
    return plan[0]["Plan"], plan[0].get("Execution Time")


def own_wal(node: dict) -> dict:
    return {"records": node.get("WAL Records", 0), "fpi": node.get("WAL FPI", 0), "bytes": node.get("WAL Bytes", 0)}


@dataclasses.dataclass
class Step:
    name: str
    run: Callable[[], dict]  # returns {"own_wal": {...}, ...}; measure() times it


def drop_steps(conn: psycopg.Connection) -> list[Step]:
    params = {"parent": PARENT, "retention": RETENTION_S, "wait_ms": LOCK_WAIT_MS}

    def drop() -> dict:
        node, executor_ms = explain_wal(conn, maintenance.DROP_PARTITIONS, params)
        return {"executor_ms": executor_ms, "own_wal": own_wal(node), "partitions_dropped": node.get("Actual Rows")}
    return [Step("drop partitions", drop)]


def delete_steps(conn: psycopg.Connection, boundary: date) -> list[Step]:
    def delete() -> dict:
        node, executor_ms = explain_wal(conn, DELETE_EXPIRED, {"boundary": boundary})
        scanned = node["Plans"][0] if node.get("Plans") else node
        return {"executor_ms": executor_ms, "own_wal": own_wal(node), "rows": scanned.get("Actual Rows")}

    def vacuum() -> dict:
        reports: list[str] = []

        def keep(diag: psycopg.errors.Diagnostic) -> None:
            reports.append(diag.message_primary or "")
        conn.add_notice_handler(keep)
        try:
            conn.execute(f"VACUUM (VERBOSE) {FLAT}.inbox")
        finally:
            conn.remove_notice_handler(keep)
        wal = {"records": 0, "fpi": 0, "bytes": 0}
        for records, fpi, written in VACUUM_WAL.findall("\n".join(reports)):  # the table and its TOAST table
            wal = {"records": wal["records"] + int(records), "fpi": wal["fpi"] + int(fpi),
                   "bytes": wal["bytes"] + int(written)}
        return {"own_wal": wal}
    return [Step("DELETE", delete), Step("VACUUM", vacuum)]


def measure(conn: psycopg.Connection, database_url: str, *, table: str, schema: str | None, steps: list[Step],
            opts: Options, label: str) -> dict:
    """CHECKPOINT, the probe for the quiet period, the steps one after the other, the margin."""
    waited = wait_autovacuum_idle(conn)
    conn.execute("CHECKPOINT")
    size_before = scalar(conn, TREE_SIZE, {"table": table})
    probe = ClaimProbe(database_url, schema=schema)
    probe.start()
    done: list[dict] = []
    try:
        time.sleep(opts.quiet_seconds)
        autovacuum_at_start = scalar(conn, AUTOVACUUM_HERE)
        for step in steps:
            log(f"[{label}] {step.name} ...")
            lsn_before, started = scalar(conn, LSN), time.perf_counter()
            result = step.run()
            ended = time.perf_counter()
            lsn_after = scalar(conn, LSN)
            result.update(name=step.name, started=started, ended=ended, seconds=round(ended - started, 4),
                          server_wal_bytes=scalar(conn, LSN_DIFF, {"a": lsn_before, "b": lsn_after}))
            log(f"[{label}] {step.name}: {result['seconds']} s, own WAL {result['own_wal']['bytes']:,} bytes")
            done.append(result)
        first, last = done[0]["started"], done[-1]["ended"]
        during_hi = last + opts.margin_seconds
        length = during_hi - first
        time.sleep(max(0.0, during_hi + length - time.perf_counter()))  # the "after" window
    finally:
        probe.stop()
    if probe.error is not None:
        raise RuntimeError(f"the probe failed: {probe.error}")
    quiet_lo = max(probe.ends[0] if probe.ends else first, first - length)
    for result in done:
        result["probe"] = probe.window(result.pop("started"), result.pop("ended"), overlapping=True)
    return {"table": table, "steps": done, "seconds": round(last - first, 4),
            "own_wal_bytes": sum(s["own_wal"]["bytes"] for s in done),
            "server_wal_bytes": sum(s["server_wal_bytes"] for s in done),
            "size_before_bytes": size_before, "size_after_bytes": scalar(conn, TREE_SIZE, {"table": table}),
            "quiet": probe.window(quiet_lo, first), "during": probe.window(first, during_hi),
            "after": probe.window(during_hi, during_hi + length),
            "probe_rows_added": probe.claimed, "probe_not_new_ids": probe.not_new, "autovacuum_wait_before_s": waited,
            "autovacuum_workers_at_start": autovacuum_at_start}


def one_repeat(services: devservices.Services, opts: Options, label: str) -> dict:
    """Load, drop, DELETE + VACUUM on a fresh database (dropped afterwards)."""
    with devservices.fresh_database(services, prefix="conveyor_bench") as database_url:
        log(f"[{label}] fresh database {devservices.database_name(database_url)}; migrating")
        migrate(database_url)
        ensure_partitions(database_url)
        with connect(database_url, statement_timeout_ms=0, lock_timeout_ms=10_000,
                     application_name="retention-bench") as conn:
            settings = server_settings(conn)
            loaded = load(conn, opts, label)
            cutoff = scalar(conn, CUTOFF, {"retention": RETENTION_S})
            found = conn.execute(EXPIRED, {"parent": PARENT, "cutoff": cutoff}).fetchall()
            if not found:
                raise RuntimeError(f"no week of the {opts.days} loaded days ends by the cutoff {cutoff}: "
                                   f"load more --days")
            expired = [r[0] for r in found]
            boundary = max(r[1] for r in found)  # the newest dropped week's upper bound (a Monday)
            expired_rows = sum(scalar(conn, f"SELECT count(*) FROM {p}") for p in expired)
            expired_bytes = sum(scalar(conn, "SELECT pg_total_relation_size(%(p)s::regclass)", {"p": p})
                                for p in expired)
            flat_expired = scalar(conn, f"SELECT count(*) FROM {FLAT}.inbox WHERE processed_on < %(b)s",
                                  {"b": boundary})
            partitions_before = scalar(conn, PARTITIONS, {"p": PARENT})
            log(f"[{label}] loaded in {loaded['seconds']} s; cutoff {cutoff}: {len(expired)} of "
                f"{partitions_before} partitions ({', '.join(expired)}), {expired_rows:,} rows before {boundary} "
                f"expired")
            dropped = measure(conn, database_url, table=PARENT, schema=None, steps=drop_steps(conn), opts=opts,
                              label=label)
            left = [r[0] for r in conn.execute(EXPIRED, {"parent": PARENT, "cutoff": cutoff}).fetchall()]
            partitions_after = scalar(conn, PARTITIONS, {"p": PARENT})
            deleted = measure(conn, database_url, table=f"{FLAT}.inbox", schema=FLAT,
                              steps=delete_steps(conn, boundary), opts=opts, label=label)
            flat_left = scalar(conn, f"SELECT count(*) FROM {FLAT}.inbox WHERE processed_on < %(b)s", {"b": boundary})
    problems = []
    if left or dropped["steps"][0]["partitions_dropped"] != len(expired):
        problems.append(f"partitions left after the drop: {left}")
    if deleted["steps"][0]["rows"] != flat_expired or flat_expired != expired_rows or flat_left:
        problems.append(f"DELETE removed {deleted['steps'][0]['rows']} rows, the drop {expired_rows}")
    dropped["rows_removed"], deleted["rows_removed"] = expired_rows, deleted["steps"][0]["rows"]
    dropped["expired_partitions_bytes"] = expired_bytes
    dropped["partitions_before"], dropped["partitions_after"] = partitions_before, partitions_after
    expired_days = sorted(d for p in expired for d in loaded["weeks"].get(p, {}).get("days", []))
    return {"settings": settings, "load": loaded, "cutoff": cutoff.isoformat(), "boundary": boundary.isoformat(),
            "expired_partitions": expired, "expired_days": expired_days,
            "partition_drop": dropped, "delete_vacuum": deleted, "ratios": ratios(dropped, deleted),
            "problems": problems}


def one_server(kind: str, opts: Options) -> dict:
    """``--repeat`` repeats on one server (the throwaway one started once for all of them)."""
    with database_server(kind) as services:
        repeats = []
        for i in range(1, opts.repeat + 1):
            repeats.append(one_repeat(services, opts, f"{kind} {i}/{opts.repeat}"))
    return {"server": kind, "settings": repeats[0]["settings"], "margin_seconds": opts.margin_seconds,
            "summary": summarise(repeats), "repeats": repeats,
            "problems": [p for r in repeats for p in r["problems"]]}


def ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    return round(a / b, digits) if a is not None and b else None


INTAKE = ("per_s", "p50_ms", "p99_ms", "max_ms")


def ratios(dropped: dict, deleted: dict) -> dict:
    def intake(phase: dict, window: str) -> dict:
        return {k: ratio(phase[window][k], phase["quiet"][k], 2) for k in INTAKE}
    return {"time_drop_over_delete_vacuum": ratio(dropped["seconds"], deleted["seconds"], 5),
            "time_drop_over_delete_alone": ratio(dropped["seconds"], deleted["steps"][0]["seconds"], 5),
            "own_wal_drop_over_delete_vacuum": ratio(dropped["own_wal_bytes"], deleted["own_wal_bytes"], 6),
            "server_wal_drop_over_delete_vacuum": ratio(dropped["server_wal_bytes"], deleted["server_wal_bytes"], 5),
            "intake_during_over_quiet": {"partition_drop": intake(dropped, "during"),
                                         "delete_vacuum": intake(deleted, "during")},
            "intake_after_over_quiet": {"partition_drop": intake(dropped, "after"),
                                        "delete_vacuum": intake(deleted, "after")},
            # every claim locks each partition of the inbox and its index and probes the index of every
            # past week kept and of the default (db/inbox.py); the copy has one table and one index
            "quiet_claims_per_s_partitioned_over_flat": ratio(dropped["quiet"]["per_s"], deleted["quiet"]["per_s"], 2),
            # the same once the expired weeks are gone (the "after" window: short, so noisier)
            "after_drop_claims_per_s_partitioned_over_flat_quiet": ratio(dropped["after"]["per_s"],
                                                                         deleted["quiet"]["per_s"], 2)}


def figures(r: dict) -> dict[str, Any]:
    """The figures of one repeat that the summary gives as median (min-max)."""
    d, x = r["partition_drop"], r["delete_vacuum"]
    delete, vacuum = x["steps"]
    out: dict[str, Any] = {
        "load_s": r["load"]["seconds"], "rows_removed": d["rows_removed"],
        "drop_s": d["seconds"], "delete_s": delete["seconds"], "vacuum_s": vacuum["seconds"],
        "delete_vacuum_s": x["seconds"],
        "drop_own_wal": d["own_wal_bytes"], "delete_own_wal": delete["own_wal"]["bytes"],
        "delete_fpi": delete["own_wal"]["fpi"], "vacuum_own_wal": vacuum["own_wal"]["bytes"],
        "delete_vacuum_own_wal": x["own_wal_bytes"],
        "drop_server_wal": d["server_wal_bytes"], "delete_vacuum_server_wal": x["server_wal_bytes"],
        "drop_size_before": d["size_before_bytes"], "drop_size_after": d["size_after_bytes"],
        "drop_files_deleted": d["expired_partitions_bytes"],
        "flat_size_before": x["size_before_bytes"], "flat_size_after": x["size_after_bytes"],
        "drop_probe_rows": d["probe_rows_added"], "flat_probe_rows": x["probe_rows_added"],
        "drop_probe_max_ms": d["steps"][0]["probe"]["max_ms"], "delete_probe_max_ms": delete["probe"]["max_ms"],
        "vacuum_probe_max_ms": vacuum["probe"]["max_ms"],
        "time_ratio": r["ratios"]["time_drop_over_delete_vacuum"],
        "own_wal_ratio": r["ratios"]["own_wal_drop_over_delete_vacuum"],
        "server_wal_ratio": r["ratios"]["server_wal_drop_over_delete_vacuum"],
        "partitioned_over_flat": r["ratios"]["quiet_claims_per_s_partitioned_over_flat"],
        "after_drop_over_flat": r["ratios"]["after_drop_claims_per_s_partitioned_over_flat_quiet"],
        "partitions_before": d["partitions_before"], "partitions_after": d["partitions_after"],
    }
    for phase, name in ((d, "partition_drop"), (x, "delete_vacuum")):
        for window in ("quiet", "during", "after"):
            for k in ("seconds", "transactions", "failed", *INTAKE):
                out[f"{name}.{window}.{k}"] = phase[window][k]
        for k in INTAKE:
            out[f"{name}.during_ratio.{k}"] = r["ratios"]["intake_during_over_quiet"][name][k]
            out[f"{name}.after_ratio.{k}"] = r["ratios"]["intake_after_over_quiet"][name][k]
    return out


def summarise(repeats: list[dict]) -> dict[str, dict]:
    each = [figures(r) for r in repeats]
    summary = {}
    for key in each[0]:
        values = [f[key] for f in each if f[key] is not None]
        summary[key] = ({"median": statistics.median(values), "min": min(values), "max": max(values)}
                        if values else {"median": None, "min": None, "max": None})
    return summary


# --------------------------------------------------------------------------- reporting


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def num(v: float) -> str:
    """Three significant digits at most, thousands separated."""
    if v == 0 or abs(v) >= 100:
        return f"{v:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:,.{digits}f}"


def whole(v: float) -> str:
    return f"{v:,.0f}"


class Cells:
    """Renders a summary figure as median (min–max), or one value when there was one repeat."""

    def __init__(self, summary: dict[str, dict]) -> None:
        self.summary = summary

    def __call__(self, key: str, unit: str = "", fmt: Callable[[float], str] = num, median_only: bool = False) -> str:
        s = self.summary[key]
        if s["median"] is None:
            return "-"
        if s["min"] == s["max"] or median_only:
            return f"{fmt(s['median'])}{unit}"
        return f"{fmt(s['median'])}{unit} ({fmt(s['min'])}–{fmt(s['max'])})"


def render(run: dict) -> str:
    s, c, n = run["settings"], Cells(run["summary"]), len(run["repeats"])

    def m(key: str) -> str:
        return c(key, fmt=mb, median_only=True)
    first = run["repeats"][0]
    loaded, days = first["load"], first["expired_days"]
    lines = ["", f"Retention on the {run['server']} PostgreSQL ({s['server_version'].split()[0]}: autovacuum "
             f"{s['autovacuum']}, fsync {s['fsync']}, full_page_writes {s['full_page_writes']}, synchronous_commit "
             f"{s['synchronous_commit']}, shared_buffers {s['shared_buffers']}): {loaded['rows']:,} rows over "
             f"{len(loaded['days'])} days in {len(loaded['weeks'])} weekly partitions; {c('rows_removed')} rows "
             f"removed: {len(first['expired_partitions'])} weeks ({', '.join(first['expired_partitions'])}: "
             f"{len(days)} days, {days[0] if days else '-'} to {days[-1] if days else '-'}); loaded in "
             f"{c('load_s', ' s')}; "
             + (f"median (min–max) of {n} repeats, each on a fresh database" if n > 1 else "one repeat"),
             "",
             f"**Quiet claims/s, partitioned inbox ({c('partitions_before', fmt=whole, median_only=True)} "
             f"partitions: the loaded weeks, this week, the next, default) / the unpartitioned copy: "
             f"{c('partitioned_over_flat')}** (daily partitions, 10 days: 0.44 machine, 0.51 throwaway); after the "
             f"drop ({c('partitions_after', fmt=whole, median_only=True)} partitions; the short 'after' window) / "
             f"the copy's quiet: {c('after_drop_over_flat')}",
             "",
             "| | partition drop | DELETE + VACUUM | drop / (DELETE + VACUUM) |",
             "|---|---|---|---|",
             f"| wall time | {c('drop_s', ' s')} | {c('delete_vacuum_s', ' s')}: DELETE {c('delete_s', ' s')}, "
             f"VACUUM {c('vacuum_s', ' s')} | **{c('time_ratio')}** |",
             f"| WAL of its own statements | {c('drop_own_wal', fmt=mb)} | {c('delete_vacuum_own_wal', fmt=mb)}: "
             f"DELETE {c('delete_own_wal', fmt=mb)} ({c('delete_fpi')} full-page images), VACUUM "
             f"{c('vacuum_own_wal', fmt=mb)} | **{c('own_wal_ratio')}** |",
             f"| server WAL over its duration (pg_wal_lsn_diff, with the probe's) | {c('drop_server_wal', fmt=mb)} | "
             f"{c('delete_vacuum_server_wal', fmt=mb)} | {c('server_wal_ratio')} |",
             f"| table size before → after (medians) | {m('drop_size_before')} → {m('drop_size_after')} "
             f"({m('drop_files_deleted')} of files deleted; the probe added {c('drop_probe_rows', median_only=True)} "
             f"rows) | {m('flat_size_before')} → {m('flat_size_after')} (the space is reusable by this table only; "
             f"the probe added {c('flat_probe_rows', median_only=True)} rows) | |",
             f"| longest probe claim overlapping it | {c('drop_probe_max_ms', ' ms')} | DELETE "
             f"{c('delete_probe_max_ms', ' ms')}, VACUUM {c('vacuum_probe_max_ms', ' ms')} | |",
             "",
             f"Intake probe (CLAIM_MANY, {IDS_PER_TRANSACTION} new ids a transaction, back to back): the quiet "
             f"window right before the operation, during it (from its start to {run['margin_seconds']} s after its "
             f"end), the same length right after that:"]
    for phase, title in (("partition_drop", "partition drop"), ("delete_vacuum", "DELETE + VACUUM")):
        lines += ["", f"| {title} | quiet | during | after | during / quiet | after / quiet |",
                  "|---|---|---|---|---|---|"]
        for key, name, unit in (("seconds", "window", " s"), ("transactions", "transactions", ""),
                                ("per_s", "transactions/s", ""), ("p50_ms", "p50", " ms"), ("p99_ms", "p99", " ms"),
                                ("max_ms", "max", " ms"), ("failed", "failed (lock timeout, ...)", "")):
            row = [name] + [c(f"{phase}.{w}.{key}", unit, median_only=key == "seconds")
                            for w in ("quiet", "during", "after")]
            row += [f"**{c(f'{phase}.during_ratio.{key}')}**", c(f"{phase}.after_ratio.{key}")] if key in INTAKE \
                else ["", ""]
            lines.append("| " + " | ".join(row) + " |")
    lines.append(f"  result: {'OK' if not run['problems'] else 'WRONG: ' + '; '.join(run['problems'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry point


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3_000_000, help="inbox rows to load (default 3,000,000)")
    parser.add_argument("--days", type=int, default=21,
                        help="past days they are spread over (default 21: on a Monday three whole weeks, the "
                             "older two of them expired; at least 8 + today's weekday (Monday 0) for one to expire)")
    parser.add_argument("--server", choices=sorted(SERVERS), default="both",
                        help="machine (CONVEYOR_DATABASE_URL), throwaway (autovacuum on), or both (default)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats per server, each on a fresh database")
    parser.add_argument("--quiet-seconds", type=float, default=10, help="probe alone before each operation")
    parser.add_argument("--margin-seconds", type=float, default=0.25,
                        help="the 'during' window ends this long after the operation")
    parser.add_argument("--json-out", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    # the newest week whose upper bound is at or before now - 7 days ends 8 + weekday days ago
    least_days = RETENTION_S // 86_400 + 1 + datetime.now(timezone.utc).weekday()
    if args.days < least_days or args.rows < args.days:
        parser.error(f"--days must be at least {least_days} today (for a whole week to end by the 7-day cutoff), "
                     f"and --rows at least --days")
    opts = Options(args.rows, args.days, args.quiet_seconds, args.margin_seconds, max(1, args.repeat))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the shell started us ignoring it
    started = datetime.now(timezone.utc)
    runs = []
    try:
        for kind in SERVERS[args.server]:
            runs.append(one_server(kind, opts))
            print(render(runs[-1]), flush=True)
        print("", flush=True)
        for run in runs:  # the key figure, once more, side by side
            q = run["summary"]["partitioned_over_flat"]
            print(f"{run['server']}: quiet claims/s, weekly-partitioned / unpartitioned = {q['median']} "
                  f"({q['min']}–{q['max']}, {len(run['repeats'])} repeats)", flush=True)
    except KeyboardInterrupt:
        log("interrupted: cleaned up (the benchmark database dropped, a throwaway server stopped)")
        return 130
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"command": "python -m bench.retention_bench " + " ".join(argv or sys.argv[1:]),
                       "started_utc": started.isoformat(timespec="seconds"), "options": dataclasses.asdict(opts),
                       "ids_per_transaction": IDS_PER_TRANSACTION, "retention_s": RETENTION_S,
                       "lock_wait_ms": LOCK_WAIT_MS, "runs": runs}, f, indent=2)
            f.write("\n")
    return 1 if any(run["problems"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
