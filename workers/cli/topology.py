"""``conveyor topology declare``: every exchange and queue."""

from __future__ import annotations

import argparse
import sys

from conveyor.workers.cli.base import EXIT_FAILED, EXIT_OK, command, emit, json_flag


def add_parsers(sub: argparse._SubParsersAction) -> None:
    topo = sub.add_parser("topology", help="RabbitMQ exchanges and queues")
    topo_sub = topo.add_subparsers(dest="topology_command", required=True, metavar="ACTION")
    declare = topo_sub.add_parser(
        "declare", help="declare every exchange and queue, and the inbound queues' bound (idempotent)",
        description="Declare every exchange and queue (workers also do at start), then apply the policy "
                    "that bounds the inbound queues to CONVEYOR_QUEUE_MAX_LENGTH messages (0: none) through "
                    "the management API (CONVEYOR_MANAGEMENT_URL; default the AMQP host, port 15672). "
                    "Exit 1 when the policy could not be applied (the queues are declared).")
    json_flag(declare)


@command("topology declare")
def topology_declare(args: argparse.Namespace) -> int:
    from conveyor.workers.bootstrap import WORKERS, declare_topology
    from conveyor.workers.runtime import policy

    settings = args.settings
    declare_topology(settings)
    report: dict = {"declared": list(WORKERS), "queue_max_length": settings.queue_max_length, "policy": None}
    code = EXIT_OK
    if settings.queue_max_length > 0:
        bound = policy.inbound_bound((spec.queue for spec in WORKERS.values()), max_length=settings.queue_max_length)
        try:
            api = policy.apply(bound, amqp_url=settings.amqp_url, management_url=settings.management_url)
            report["policy"] = {"name": bound.name, "pattern": bound.pattern, "definition": bound.definition,
                                "via": api}
        except policy.PolicyError as error:
            report["error"] = str(error)
            code = EXIT_FAILED
    text = f"declared exchanges and queues for {', '.join(WORKERS)}"
    if report["policy"]:
        text += f"\ninbound queues bounded to {settings.queue_max_length:,} messages (policy {bound.name})"
    elif settings.queue_max_length == 0:
        text += "\ninbound queues unbounded (CONVEYOR_QUEUE_MAX_LENGTH=0)"
    if "error" in report:
        print(f"conveyor: {report['error']}", file=sys.stderr)
    emit(args, report, text)
    return code

