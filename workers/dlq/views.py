"""The longer views: one dead letter in full (``dlq show``) and the audit trail (``dlq audit``). Pure."""

from __future__ import annotations

import json

from conveyor.workers.dlq.encoding import encode_body, properties_to_dict
from conveyor.workers.dlq.fingerprint import fingerprint
from conveyor.workers.dlq.lookup import Found, pretty_body
from conveyor.workers.dlq.render import fmt_time, jsonable_dict, letter_json, shorten, table


def show_json(dlq: str, found: Found, knows: dict) -> dict:
    held = found.held
    encoding, body = encode_body(held.body)
    return jsonable_dict({
        "queue": dlq, "position": held.letter.position, "depth": found.depth, "copies": found.copies,
        "letter": letter_json(held.letter), "properties": properties_to_dict(held.properties),
        "body_encoding": encoding, "body": body, "body_json": pretty_body(held.body)[1], "conveyor": knows,
    })


def show_text(dlq: str, found: Found, knows: dict) -> str:
    letter = found.held.letter
    title = (f"{dlq}: message {letter.message_id or '(no message_id)'} (position {letter.position + 1} "
             f"of {found.depth}, {found.copies} cop{'y' if found.copies == 1 else 'ies'})")
    return "\n\n".join([title, _failure(letter), _properties(found.held.properties),
                        _body(found.held.body), _knowledge(knows)])


def _failure(letter) -> str:
    pairs = [
        ("error", f"{letter.error_class} ({letter.error_code})" if letter.error_code else letter.error_class),
        ("message", letter.error_message), ("reason", letter.reason), ("where", letter.where or "-"),
        ("attempts", letter.attempts), ("first failed", fmt_time(letter.first_failed_at)),
        ("last failed", fmt_time(letter.failed_at)), ("fingerprint", fingerprint(letter)),
        ("came from", f"{letter.exchange or '(default)'} -> {letter.routing_key} (queue {letter.original_queue})"
                      if letter.routable else "unknown (replay needs --to-queue)"),
    ]
    if letter.replay_id:
        pairs.append(("replayed", f"by {letter.replayed_by} in run {letter.replay_id}, then failed again"))
    return _section("failure", pairs)


def _properties(properties) -> str:
    data = properties_to_dict(properties)
    headers = data.pop("headers", {})
    return "\n\n".join([_section("properties", sorted(data.items())),
                        _section("headers", sorted(headers.items()) or [("(none)", "")])])


def _body(body: bytes) -> str:
    text, document = pretty_body(body)
    kind = "JSON" if document is not None else "text" if not text.startswith("(") else "binary"
    return f"body ({len(body)} bytes, {kind})\n" + "\n".join("  " + line for line in text.splitlines())


def _knowledge(knows: dict) -> str:
    if "error" in knows:
        return _section("what Conveyor knows now", [("database", knows["error"])])
    pairs = [("inbox", "processed: a replay would have no effect" if knows["processed"]
              else "not processed (no inbox row for this message_id)"), ("order", _order(knows["order"]))]
    for event in knows["audit"]:
        pairs.append(("audit", f"{fmt_time(event['recorded_at'])} {event['action']} by {event['operator']}: "
                               f"{event['outcome']} {event['target'] or ''} (run {event['run_id']})"))
    return _section("what Conveyor knows now", pairs)


def _order(order: dict | None) -> str:
    if order is None:
        return "no order recorded for this order id (or no order id in the body)"
    return (f"{order['order_id']} {order['status']} total {order.get('total')} {order.get('currency')}, "
            f"{len(order.get('lines', []))} line(s), updated {order.get('updated_at')}")


def _section(title: str, pairs) -> str:
    width = max((len(str(k)) for k, _ in pairs), default=0)
    return title + "\n" + "\n".join(f"  {str(k).ljust(width)}  {shorten(str(v), 200)}" for k, v in pairs)


def audit_runs_text(runs: list[dict]) -> str:
    rows = [(fmt_time(r["started_at"]), r["action"], r["operator"], r["queue"], _outcome(r), r["matched"],
             r["succeeded"], r["failed"], r["run_id"]) for r in runs]
    return table(("STARTED", "ACTION", "OPERATOR", "QUEUE", "OUTCOME", "MATCHED", "DONE", "FAILED", "RUN"), rows)


def audit_run_text(run: dict, messages: list[dict]) -> str:
    head = (f"{run['action']} {run['run_id']} on {run['queue']} by {run['operator']}: {_outcome(run)}, "
            f"started {fmt_time(run['started_at'])}, finished {fmt_time(run['finished_at'])}\n"
            f"  asked for: {json.dumps(run['selection'], sort_keys=True)}\n  detail: {run['detail'] or '-'}")
    rows = [(m["seq"], m["message_id"] or "(none)", m["outcome"], m["target"] or "-", fmt_time(m["recorded_at"]))
            for m in messages]
    return head + "\n" + table(("#", "MESSAGE ID", "OUTCOME", "TARGET", "AT"), rows)


def _outcome(run: dict) -> str:
    return "running or interrupted" if run["outcome"] == "running" else run["outcome"]
