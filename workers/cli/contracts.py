"""``conveyor validate`` and ``conveyor publish``: a shop's document checked (and sent) offline.

Both run the worker's own parser (``kit/contract.py``), so ``validate`` prints the reason a
worker would write in ``x-conveyor-error-message``, and ``publish`` never sends what
``validate`` refuses.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, BinaryIO

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_OK, EXIT_USAGE, command, emit, json_flag

if TYPE_CHECKING:
    from conveyor.workers.kit.contract import Verdict

# The consumed types (schemas/registry.py), spelled here so --help loads no model.
CONSUMED_TYPES = ("order.created", "order.cancelled", "payment.authorized", "payment.failed",
                  "shipment.dispatched", "shipment.delivered")
# RabbitMQ refuses larger messages (its default max_message_size): past it we only count.
_KEEP_AT_MOST = 128 * 1024 * 1024
_EXITS = ("Exit codes: 0 accepted{sent}, 1 refused (the reason on stderr{nothing}){more}, "
          "2 usage (unknown type, FILE missing, a directory or unreadable){unreachable}.")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="check a document as a worker would (the DLQ's reason when refused)",
        description="Run the worker's parser on FILE ('-': standard input): size "
                    "(CONVEYOR_MAX_MESSAGE_BYTES), UTF-8, strict JSON, the type's schema. An empty, "
                    "non-JSON or too large file is a refused document.",
        epilog=_EXITS.format(sent="", nothing="", more="", unreachable=""))
    p.add_argument("--type", default="order.created", choices=CONSUMED_TYPES,
                   help="the message type (default order.created)")
    p.add_argument("file", metavar="FILE", help="the JSON document, or - for standard input")
    json_flag(p)
    p = sub.add_parser(
        "publish", help="validate a document, then publish it with confirms (prints its message_id)",
        description="Validate FILE exactly like `conveyor validate`, then publish it to the type's exchange "
                    "with the type as routing key, message_id, type, content_type application/json, "
                    "delivery_mode 2, mandatory, and wait for the broker's confirm.",
        epilog=_EXITS.format(sent=" and confirmed", nothing=", nothing sent",
                             more="; 1 also when the broker nacks it or no queue is bound for it",
                             unreachable=", 3 the broker is unreachable"))
    p.add_argument("type", metavar="TYPE", choices=CONSUMED_TYPES, help=f"one of {', '.join(CONSUMED_TYPES)}")
    p.add_argument("file", metavar="FILE", help="the JSON document, or - for standard input")
    p.add_argument("--message-id", default=None, help="the message_id (default: a new UUID); reuse it to re-send")
    json_flag(p)


@command("validate")
def validate(args: argparse.Namespace) -> int:
    from conveyor.workers.kit.contract import check

    body = _read(args.file)
    if body is None:
        return EXIT_USAGE
    verdict = _too_large(args, body) or check(args.type, body, settings=args.settings)
    if not verdict.accepted:
        return _refused(args, verdict, body)
    ignored = f" (unknown fields ignored: {', '.join(verdict.ignored_fields)})" if verdict.ignored_fields else ""
    emit(args, verdict.as_dict(), f"accepted: {args.type}{ignored}")
    return EXIT_OK


@command("publish")
def publish(args: argparse.Namespace) -> int:
    from conveyor.workers.kit.contract import check
    from conveyor.workers.kit.publisher import ConveyorPublisher, DocumentRefused, NotDelivered

    body = _read(args.file)
    if body is None:
        return EXIT_USAGE
    verdict = _too_large(args, body) or check(args.type, body, message_id=args.message_id, settings=args.settings)
    if not verdict.accepted:
        return _refused(args, verdict, body)
    try:
        with ConveyorPublisher(args.settings.amqp_url, settings=args.settings, name="conveyor-cli-publish") as p:
            message_id = p.publish(args.type, body, message_id=args.message_id)
    except DocumentRefused as refused:  # cannot differ from the check above; kept for safety
        return _refused(args, refused.verdict, body)
    except NotDelivered as error:
        print(f"conveyor: not delivered: {error}", file=sys.stderr)
        return EXIT_FAILED
    emit(args, {"published": True, "type": args.type, "message_id": message_id}, message_id)
    return EXIT_OK


def _read(path: str) -> bytes | None:
    """The document's bytes (at most _KEEP_AT_MOST kept), or None after one line on stderr."""
    if path == "-":
        return _bounded(sys.stdin.buffer)
    if not os.path.exists(path):
        print(f"conveyor: {path}: no such file", file=sys.stderr)
    elif os.path.isdir(path):
        print(f"conveyor: {path}: is a directory, not a file", file=sys.stderr)
    else:
        try:
            with open(path, "rb") as stream:
                return _bounded(stream)
        except OSError as error:
            print(f"conveyor: {path}: cannot read: {error.strerror or error}", file=sys.stderr)
    return None


class _Oversized(bytes):
    """The first _KEEP_AT_MOST bytes of a longer document, and its full length."""

    size: int


def _bounded(stream: BinaryIO) -> bytes:
    kept = stream.read(_KEEP_AT_MOST)
    extra = 0
    while chunk := stream.read(1 << 20):
        extra += len(chunk)
    if not extra:
        return kept
    oversized = _Oversized(kept)
    oversized.size = len(kept) + extra
    return oversized


def _too_large(args: argparse.Namespace, body: bytes) -> Verdict | None:
    """The parser's own refusal for a document too long to keep in memory whole."""
    if not isinstance(body, _Oversized):
        return None
    from conveyor.schemas.errors import InvalidMessage
    from conveyor.workers.kit.contract import Verdict

    error = InvalidMessage("too_large", f"body is {body.size} bytes, limit is {args.settings.max_message_bytes}")
    return Verdict(False, args.type, error.code, str(error))


def _refused(args: argparse.Namespace, verdict: Verdict, body: bytes) -> int:
    hint = " (the file is empty)" if not body else ""
    print(f"conveyor: refused: {verdict.reason}{hint}", file=sys.stderr)
    if getattr(args, "json", False):
        emit(args, verdict.as_dict(), "")
    return EXIT_FAILED
