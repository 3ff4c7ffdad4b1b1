"""``conveyor relay status``: how far behind the relay is and which relay is publishing.

Exit 0, or 1 when rows are pending and no relay holds a live lease (nothing will publish
them); 3 when the database is unreachable.
"""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_OK, command, emit, json_flag


def add_parsers(sub) -> None:
    relay = sub.add_parser("relay", help="the outbox relay: status")
    relay_sub = relay.add_subparsers(dest="relay_command", required=True, metavar="ACTION")
    p = relay_sub.add_parser(
        "status", help="pending rows, oldest pending age, last sent, which relay is active, the outbox's slots",
        description="Exit 0, or 1 when rows are pending and no relay holds a live lease.")
    json_flag(p)


@command("relay status")
def relay_status(args: argparse.Namespace) -> int:
    from conveyor.db.connection import connect

    with connect(args.settings.database_url) as conn:
        data = read_status(conn)
    emit(args, data, render(data))
    return EXIT_FAILED if data["pending"] and not data["lease_live"] else EXIT_OK


def read_status(conn) -> dict:
    from conveyor.db import views

    stats = views.outbox_stats(conn)
    lease = views.lease_state(conn)
    rotation = views.rotation_state(conn)
    live = bool(lease and lease.live)
    return {
        "pending": stats.pending,
        "pending_by_exchange": stats.pending_by_exchange,
        "oldest_pending_at": _iso(stats.oldest_pending_at),
        "oldest_pending_age_s": (round(stats.oldest_pending_age_s, 3)
                                 if stats.oldest_pending_age_s is not None else None),
        "last_sent_at": _iso(lease.last_sent_at) if lease else None,
        "sent_total": lease.sent_total if lease else 0,
        "active_relay": lease.holder if lease and live else None,
        "lease_live": live,
        "lease_holder": lease.holder if lease else None,
        "lease_acquired_at": _iso(lease.acquired_at) if lease else None,
        "lease_expires_at": _iso(lease.expires_at) if lease else None,
        "outbox_slot": rotation.slot,
        "outbox_rotated_at": _iso(rotation.rotated_at),
        "outbox_rotations": rotation.rotations,
        "outbox_truncations": rotation.truncations,
        "outbox_size_bytes": rotation.size_bytes,
        "checked_at": _iso(stats.checked_at),
    }


def render(data: dict) -> str:
    by_exchange = ", ".join(f"{name} {count}" for name, count in data["pending_by_exchange"].items())
    oldest = f", oldest {data['oldest_pending_age_s']:.1f} s old" if data["pending"] else ""
    if data["active_relay"]:
        active = f"{data['active_relay']} (since {data['lease_acquired_at']}, lease until {data['lease_expires_at']})"
    else:
        last = f"; last held by {data['lease_holder']}" if data["lease_holder"] else ""
        active = f"none{last}"
    return "\n".join([
        f"pending       {data['pending']}{' (' + by_exchange + ')' if by_exchange else ''}{oldest}",
        f"last sent     {data['last_sent_at'] or 'never'} ({data['sent_total']} sent in all)",
        f"active relay  {active}",
        f"outbox        slot {data['outbox_slot']} since {data['outbox_rotated_at']}; "
        f"{data['outbox_rotations']} rotations, {data['outbox_truncations']} drained slots truncated; "
        f"{data['outbox_size_bytes'] / 1e6:.1f} MB on disk",
    ])


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
