"""``conveyor gdpr export|erase`` (a data subject's requests) and ``conveyor pii status|rotate-key``
(the keys of customers' personal data): docs/privacy.md."""

from __future__ import annotations

import argparse
import json
import sys

from conveyor.workers.cli.base import EXIT_NOT_FOUND, EXIT_OK, command, emit, json_flag, tenant_flag

SUBJECT_HELP = "the shop's customer_id (as sent in order.created)"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    gdpr = sub.add_parser("gdpr", help="a customer's access and erasure requests",
                          description="Exit codes: 0 done, 1 failed (nothing half-done: rerun), 2 usage or key "
                                      "file problem, 3 database/broker unreachable, 4 unknown customer.")
    gdpr_sub = gdpr.add_subparsers(dest="gdpr_command", required=True, metavar="ACTION")
    p = gdpr_sub.add_parser("export", help="everything Conveyor stores about a customer")
    p.add_argument("customer", metavar="CUSTOMER", help=SUBJECT_HELP)
    tenant_flag(p)
    json_flag(p)
    p = gdpr_sub.add_parser("erase", help="erase a customer's personal data everywhere (orders keep their facts)",
                            description="Shreds the customer's data key (every sealed copy, archives included, "
                                        "becomes unreadable), deletes their sealed data, replaces their id on "
                                        "orders and pending events, redacts their DLQ copies, and records the "
                                        "request (audit.privacy_requests, by hash). Idempotent: rerun after a "
                                        "failure.")
    p.add_argument("customer", metavar="CUSTOMER", help=SUBJECT_HELP)
    tenant_flag(p)
    p.add_argument("--skip-dlq", action="store_true", help="leave the DLQs alone (broker down: rerun later)")
    json_flag(p)
    pii = sub.add_parser("pii", help="keys of customers' personal data (CONVEYOR_PII_KEY_FILE)")
    pii_sub = pii.add_subparsers(dest="pii_command", required=True, metavar="ACTION")
    p = pii_sub.add_parser("status", help="data keys per key id; checks the key file decrypts them")
    json_flag(p)
    p = pii_sub.add_parser("rotate-key", help="add a new current key to the key file and re-wrap every data key",
                           description="Adds KEY_ID (default: k<N+1>) to CONVEYOR_PII_KEY_FILE as the current "
                                       "key, then re-wraps the data keys in batches (resumable: --resume re-wraps "
                                       "what is left without adding a key). Keep the old keys in the file until "
                                       "`conveyor pii status` shows none use them.")
    p.add_argument("--key-id", default=None, help="id of the new key")
    p.add_argument("--resume", action="store_true", help="only re-wrap (a rotation was interrupted)")
    json_flag(p)


def _subject(args: argparse.Namespace) -> tuple[str, str]:
    return args.tenant or args.settings.default_tenant, args.customer


def _ring(args: argparse.Namespace, *, required: bool):
    from conveyor.db.crypto import insecure_permissions, load_keyring

    path = args.settings.pii_key_file
    if not path:
        if required:
            raise ValueError("no PII key file: set CONVEYOR_PII_KEY_FILE")
        return None
    ring = load_keyring(path)  # PiiKeyError: one line, exit 2
    if insecure_permissions(path):
        print(f"conveyor: warning: {path} is readable by group or others (chmod 600)", file=sys.stderr)
    return ring


def _optional_ring(args: argparse.Namespace):
    """The keyring if the key file can be read, else None (with a warning): erasure needs no key."""
    from conveyor.db.crypto import PiiError

    try:
        return _ring(args, required=False)
    except PiiError as error:
        print(f"conveyor: warning: {error}", file=sys.stderr)
        return None


@command("gdpr export")
def gdpr_export(args: argparse.Namespace) -> int:
    from conveyor.db import personal
    from conveyor.db.connection import connect, transaction
    from conveyor.db.privacy_subject import subject_hash
    from conveyor.workers.dlq.audit import current_operator

    tenant, customer = _subject(args)
    ring = _ring(args, required=False)
    with connect(args.settings.database_url, application_name="conveyor-gdpr") as conn, transaction(conn):
        orders = personal.customer_orders(conn, tenant, customer)
        records = personal.customer_records(conn, ring, tenant, customer)
        if not orders and not records and not personal.has_data_key(conn, tenant, customer):
            erased = personal.erased_before(conn, subject_hash(tenant, customer))
            print(f"conveyor: {'customer was erased' if erased else 'no data about customer'} "
                  f"{customer!r} of tenant {tenant!r}", file=sys.stderr)
            return EXIT_NOT_FOUND
        personal.audit(conn, "export", tenant=tenant, subject=subject_hash(tenant, customer),
                       operator=current_operator(), detail=json.dumps({"orders": len(orders)}))
    document = {"tenant_id": tenant, "customer_id": customer, "orders": orders, "personal_data": records}
    emit(args, document, _export_text(document))
    return EXIT_OK


def _export_text(document: dict) -> str:
    lines = [f"customer {document['customer_id']} of tenant {document['tenant_id']}: "
             f"{len(document['orders'])} order(s)"]
    lines += [f"  order {o['order_id']}  {o['status']:<9} {o['total']} {o['currency']}  placed {o['placed_at']}"
              for o in document["orders"]]
    for record in document["personal_data"]:
        fields = record["customer"] or {"(data key shredded)": ""}
        lines.append(f"  personal data of order {record['order_id']}:")
        lines += [f"    {key}: {value}" for key, value in sorted(fields.items())]
    return "\n".join(lines)


@command("gdpr erase")
def gdpr_erase(args: argparse.Namespace) -> int:
    from conveyor.db import personal
    from conveyor.db.connection import connect, transaction
    from conveyor.db.privacy_subject import erased_customer_id, subject_hash
    from conveyor.workers.dlq.audit import current_operator

    tenant, customer = _subject(args)
    subject = subject_hash(tenant, customer)
    erased_id = erased_customer_id(subject)
    ring = _optional_ring(args)
    with connect(args.settings.database_url, application_name="conveyor-gdpr") as conn, transaction(conn):
        emails = _known_emails(conn, ring, tenant, customer)
        counts = personal.erase(conn, tenant, customer, erased_id=erased_id)
        known_before = personal.erased_before(conn, subject)
        if not any(counts.values()) and not known_before:
            print(f"conveyor: no data about customer {customer!r} of tenant {tenant!r}", file=sys.stderr)
            return EXIT_NOT_FOUND
        personal.audit(conn, "erase", tenant=tenant, subject=subject, operator=current_operator(),
                       detail=json.dumps(counts))
    result: dict = {"tenant_id": tenant, "subject_hash": subject, "replaced_by": erased_id, "database": counts}
    if not args.skip_dlq:
        result["dead_letters"] = _erase_dlqs(args, tenant, customer, erased_id, emails)
    emit(args, result, _erase_text(result))
    return EXIT_OK


def _known_emails(conn, ring, tenant: str, customer: str) -> frozenset[str]:
    """The customer's emails, to find DLQ copies that name them; erasure needs no key, so a
    key file that is missing or wrong only narrows the DLQ search to the customer id."""
    from conveyor.db import personal
    from conveyor.db.crypto import PiiError

    if ring is None:
        return frozenset()
    try:
        records = personal.customer_records(conn, ring, tenant, customer)
    except PiiError as error:
        print(f"conveyor: warning: {error}; dead letters are matched by customer id only", file=sys.stderr)
        return frozenset()
    return frozenset(r["customer"]["email"] for r in records if r["customer"] and "email" in r["customer"])


def _erase_dlqs(args: argparse.Namespace, tenant: str, customer: str, erased_id: str,
                emails: frozenset[str]) -> dict:
    from conveyor.workers.bootstrap import WORKERS
    from conveyor.workers.dlq.erasure import Subject, erase_from_dlqs
    from conveyor.workers.runtime.topology import dlq_name

    subject = Subject(tenant, customer, erased_id, args.settings.default_tenant, emails)
    report = erase_from_dlqs(args.settings, [dlq_name(spec.queue) for spec in WORKERS.values()], subject)
    return {"scanned": report.scanned, "redacted": report.redacted, "missing": report.missing}


def _erase_text(result: dict) -> str:
    db = result["database"]
    lines = [f"erased: data keys {db['data_keys']}, personal data of {db['customer_records']} order(s), "
             f"id replaced by {result['replaced_by']} on {db['orders']} order(s) and {db['outbox_events']} "
             f"pending event(s)"]
    if "dead_letters" in result:
        redacted = sum(result["dead_letters"]["redacted"].values())
        lines.append(f"dead letters: {redacted} redacted of {sum(result['dead_letters']['scanned'].values())}")
    return "\n".join(lines)


@command("pii status")
def pii_status(args: argparse.Namespace) -> int:
    from conveyor.db import personal
    from conveyor.db.connection import connect

    ring = _ring(args, required=True)
    with connect(args.settings.database_url, application_name="conveyor-pii") as conn:
        per_key = personal.keys_per_id(conn)
        personal.check_keyring(conn, ring)
    data = {"key_file": str(ring.path), "current": ring.current, "data_keys_per_key_id": per_key,
            "rotation_pending": sum(n for k, n in per_key.items() if k != ring.current)}
    text = "\n".join([f"key file {ring.path}: current key {ring.current}"] +
                     [f"  {k}: {n} data key(s)" for k, n in per_key.items()] or ["  no data keys yet"])
    emit(args, data, text)
    return EXIT_OK


@command("pii rotate-key")
def pii_rotate_key(args: argparse.Namespace) -> int:
    from conveyor.db import personal
    from conveyor.db.connection import connect, transaction
    from conveyor.db.crypto import add_key
    from conveyor.workers.dlq.audit import current_operator

    ring = _ring(args, required=True)
    with connect(args.settings.database_url, application_name="conveyor-pii") as conn:
        personal.check_keyring(conn, ring)  # before anything changes: the file must fit the data
        if not args.resume:
            ring = add_key(ring.path, args.key_id or _next_id(ring.key_ids))
        total = 0
        while True:
            with transaction(conn):
                done = personal.rewrap_batch(conn, ring)
            total += done
            if done:
                print(f"rotate-key: {total} data key(s) re-wrapped", file=sys.stderr)
            else:
                break
        with transaction(conn):
            personal.audit(conn, "rotate-key", tenant=None, subject=None, operator=current_operator(),
                           detail=json.dumps({"current": ring.current, "rewrapped": total}))
    emit(args, {"current": ring.current, "rewrapped": total},
         f"current key {ring.current}; {total} data key(s) re-wrapped")
    return EXIT_OK


def _next_id(existing: tuple[str, ...]) -> str:
    n = len(existing) + 1
    while f"k{n}" in existing:
        n += 1
    return f"k{n}"
