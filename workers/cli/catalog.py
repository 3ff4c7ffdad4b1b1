"""``conveyor catalog import|search|export``: the product catalogue (docs/catalogue.md).

Import reads a CSV (with a header) or JSON Lines file, checks every line
(``conveyor.schemas.catalogue``), COPYs the good ones into a staging table and applies them in
one upsert (``conveyor.db.catalogue``), all in one transaction. Progress (bytes read, rows per
second, ETA) goes to stderr, the bad lines too (``FILE:LINE: reason``), the summary to stdout.

Exit codes: 0 applied (with ``--skip-invalid``, the refused lines written to the rejects file);
1 some lines are refused and nothing was applied; 2 the file cannot be read as a whole (missing,
wrong header, not UTF-8, an unclosed CSV quote: the line is named) or bad options; 3 the database
is unreachable; 4 search: no such tenant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conveyor.workers.cli.base import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    command,
    emit,
    json_flag,
    tenant_flag,
)

if TYPE_CHECKING:
    from conveyor.schemas.catalogue import Line

PROGRESS_INTERVAL_S = 2.0
SHOWN_BAD_LINES = 1_000  # on stderr; --json and the rejects file have every one


def add_parsers(sub: argparse._SubParsersAction) -> None:
    catalog = sub.add_parser("catalog", help="the product catalogue: import a file, search, export",
                             epilog="Exit codes: 0 ok, 1 lines refused (nothing applied), 2 usage or unreadable "
                                    "file, 3 database unreachable, 4 unknown tenant. See docs/catalogue.md.")
    actions = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    p = actions.add_parser("import", help="create or update products from a CSV or JSON Lines file",
                           description="Fields: sku, name, price (decimal string), currency, and optionally "
                                       "description, attributes (a JSON object; in CSV a JSON-encoded column), "
                                       "tenant_id. All or nothing, unless --skip-invalid. Importing the same "
                                       "file again changes nothing.")
    p.add_argument("file", metavar="FILE", help="the file ('-' for stdin)")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the name (.csv, .jsonl) or content")
    p.add_argument("--skip-invalid", action="store_true",
                   help="apply the good lines and write the refused ones to --rejects")
    p.add_argument("--rejects", metavar="PATH", help="where --skip-invalid writes the refused lines "
                                                     "(default: FILE.rejected)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    tenant_flag(p)
    json_flag(p)
    p = actions.add_parser("search", help="products matching a query, best first (typos tolerated)")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                   help="attribute equal to the string VALUE (KEY:=JSON for a number, true, ...); repeatable")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20, at most 1000)")
    tenant_flag(p)
    json_flag(p)
    p = actions.add_parser("export", help="the catalogue as CSV or JSON Lines (what import reads)")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--output", "-o", metavar="PATH", help="default: stdout")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tenant", default=None, help="one tenant (default: CONVEYOR_DEFAULT_TENANT)")
    group.add_argument("--all-tenants", action="store_true", help="every tenant's products")


# -- import -------------------------------------------------------------------------------------
@command("catalog import")
def catalog_import(args: argparse.Namespace) -> int:
    from conveyor.db import catalogue
    from conveyor.db.connection import connect
    from conveyor.schemas.catalogue import FileRefused

    tenant = args.tenant or args.settings.default_tenant
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as error:
        return _refuse_file(args, 0, f"cannot read the file: {error.strerror}")
    with stream, connect(args.settings.database_url, application_name="conveyor-catalog",
                         statement_timeout_ms=0) as conn:
        file_format = args.format or _detect(args.file, stream)
        minor_units = catalogue.currency_minor_units(conn)
        rows_before = catalogue.estimated_rows(conn)
        progress = _Progress(stream, quiet=args.quiet or args.json)
        bad: list[Line] = []
        try:
            with conn.transaction():
                from conveyor.schemas.catalogue import read_products

                lines = read_products(stream, file_format=file_format,  # type: ignore[arg-type]
                                      default_tenant=tenant, minor_units=minor_units)
                rows, words = catalogue.stage(conn, _good(lines, bad, progress))
                progress.close()
                if bad and not args.skip_invalid:
                    raise _Rollback
                if not args.quiet and not args.json:
                    print(f"applying {rows:,} rows ...", file=sys.stderr)
                result = catalogue.apply_staged(conn, rows, words)
        except _Rollback:
            return _refused_lines(args, bad)
        except FileRefused as error:
            progress.close()
            return _refuse_file(args, error.line, error.reason)
        catalogue.analyze_if_worth_it(conn, result, rows_before)
    rejects = _write_rejects(args, bad, file_format) if bad else None
    _show_bad(args, bad)
    summary: dict[str, Any] = {"file": args.file, "format": file_format, "rows": result.rows,
                               "inserted": result.inserted, "updated": result.updated,
                               "unchanged": result.unchanged, "refused": len(bad), "rejects_file": rejects,
                               "analyzed": result.analyzed, "seconds": round(progress.elapsed(), 3),
                               "rows_per_second": round(result.rows / max(progress.elapsed(), 1e-6))}
    if args.json:
        summary["bad_lines"] = [{"line": b.number, "reason": b.reason} for b in bad]
    text = (f"imported {result.rows:,} rows from {args.file}: {result.inserted:,} inserted, "
            f"{result.updated:,} updated, {result.unchanged:,} unchanged in {summary['seconds']} s "
            f"({summary['rows_per_second']:,} rows/s)")
    if bad:
        text += f"; {len(bad):,} lines refused, written to {rejects}"
    emit(args, summary, text)
    return EXIT_OK


class _Rollback(Exception):
    """Lines were refused: leave the transaction without applying anything."""


def _good(lines: Any, bad: list[Line], progress: _Progress) -> Any:
    for line in lines:
        progress.advance()
        if line.product is None:
            bad.append(line)
        else:
            yield line.product


def _detect(path: str, stream: Any) -> str:
    from conveyor.schemas.catalogue import detect_format

    first = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    return detect_format(path, first)


def _refused_lines(args: argparse.Namespace, bad: list[Line]) -> int:
    _show_bad(args, bad)
    emit(args, {"error": "lines_refused", "file": args.file, "refused": len(bad), "applied": 0,
                "bad_lines": [{"line": b.number, "reason": b.reason} for b in bad]},
         f"nothing imported: {len(bad):,} lines refused (fix them, or --skip-invalid to apply the rest)")
    return EXIT_FAILED


def _show_bad(args: argparse.Namespace, bad: list[Line]) -> None:
    if args.json:
        return
    for b in bad[:SHOWN_BAD_LINES]:
        print(f"{args.file}:{b.number}: {b.reason}", file=sys.stderr)
    if len(bad) > SHOWN_BAD_LINES:
        print(f"... and {len(bad) - SHOWN_BAD_LINES:,} more (--json lists every one)", file=sys.stderr)


def _refuse_file(args: argparse.Namespace, line: int, reason: str) -> int:
    where = f"{args.file}:{line}" if line else args.file
    print(f"conveyor: {where}: {reason}; nothing imported", file=sys.stderr)
    if args.json:
        print(json.dumps({"error": "file_refused", "file": args.file, "line": line or None, "reason": reason,
                          "applied": 0}, indent=2))
    return EXIT_USAGE


def _write_rejects(args: argparse.Namespace, bad: list[Line], file_format: str) -> str:
    path = args.rejects or f"{'stdin' if args.file == '-' else args.file}.rejected"
    with open(path, "w", encoding="utf-8", newline="") as out:
        if file_format == "csv" and args.file != "-":
            with open(args.file, encoding="utf-8-sig", newline="") as source:
                out.write(source.readline())  # the header, so the file can be fixed and imported
        for b in bad:
            out.write(b.raw if b.raw.endswith("\n") else b.raw + "\n")
    return path


class _Progress:
    """``import  41.2% 412,000 rows  52,310 rows/s  ETA 11 s`` on stderr: redrawn on a TTY,
    a line every few seconds otherwise; the fraction is of the file's bytes."""

    def __init__(self, stream: Any, *, quiet: bool, out: IO[str] | None = None) -> None:
        self.stream, self.quiet, self.out = stream, quiet, out or sys.stderr
        try:
            self.size = os.fstat(stream.fileno()).st_size
        except (OSError, AttributeError, ValueError):
            self.size = 0
        self.rows, self.started, self.last = 0, time.monotonic(), 0.0
        self.tty = self.out.isatty()
        self.every = 0.2 if self.tty else PROGRESS_INTERVAL_S

    def advance(self) -> None:
        self.rows += 1
        if not self.quiet and self.rows % 4096 == 0 and time.monotonic() - self.last >= self.every:
            self._draw()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        if not self.quiet and self.rows:
            self._draw()
            if self.tty:
                self.out.write("\n")
        self.quiet = True

    def _draw(self) -> None:
        self.last = time.monotonic()
        elapsed = max(self.last - self.started, 1e-3)
        rate = self.rows / elapsed
        try:
            done = self.stream.tell() / self.size if self.size else 0.0
        except (OSError, ValueError):
            done = 0.0
        eta = f"ETA {elapsed * (1 - done) / done:,.0f} s" if 0 < done < 1 else ""
        fraction = f"{done:6.1%} " if self.size else ""
        line = f"import {fraction}{self.rows:,} rows {rate:,.0f} rows/s {eta}".rstrip()
        self.out.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.out.flush()


# -- search -------------------------------------------------------------------------------------
@command("catalog search")
def catalog_search(args: argparse.Namespace) -> int:
    from conveyor.db import catalogue
    from conveyor.db.connection import connect_reader

    tenant = args.tenant or args.settings.default_tenant
    if not 1 <= args.limit <= 1000:
        raise ValueError("--limit must be 1 to 1000")
    attributes = _attributes(args.attr)
    with connect_reader(args.settings.database_read_url, args.settings.database_url) as conn:
        try:
            found = catalogue.search(conn, tenant, args.query, attributes=attributes, limit=args.limit)
        except catalogue.UnknownTenant:
            emit(args, {"error": "not_found", "tenant_id": tenant}, f"no tenant {tenant!r}")
            return EXIT_NOT_FOUND
    lines = [f"{r['rank']:7.4f}  {r['sku']:<24} {r['name']}  {r['price']} {r['currency']}" for r in found]
    emit(args, {"tenant_id": tenant, "query": args.query, "results": found},
         "\n".join(lines) if lines else f"nothing matches {args.query!r}")
    return EXIT_OK


def _attributes(pairs: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        key, typed, value = pair.partition(":=")
        if typed:
            try:
                found[key] = json.loads(value)
            except ValueError:
                raise ValueError(f"--attr {pair!r}: the value after := must be JSON") from None
        else:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"--attr {pair!r} is not KEY=VALUE")
            found[key] = value
        if not key:
            raise ValueError(f"--attr {pair!r} has no key")
    return found


# -- export -------------------------------------------------------------------------------------
@command("catalog export")
def catalog_export(args: argparse.Namespace) -> int:
    from conveyor.db import catalogue
    from conveyor.db.connection import connect_reader

    tenant = None if args.all_tenants else (args.tenant or args.settings.default_tenant)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    try:
        with connect_reader(args.settings.database_read_url, args.settings.database_url,
                            statement_timeout_ms=0) as conn:
            rows = catalogue.export(conn, out, file_format=args.format, tenant=tenant)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    if args.output:
        print(f"exported {rows:,} products to {Path(args.output)}", file=sys.stderr)
    return EXIT_OK
