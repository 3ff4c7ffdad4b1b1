"""The restore drill on demand: ``make drill`` or ``python -m tests.drill.run [--json]``.

Prints each phase as it goes, then a summary: checksums at T against the restored database,
``conveyor reconcile``, the checker's verdicts, what became of the orders committed after T,
and RPO and RTO as measured. Exit 0 when the drill passed, 1 otherwise (the run's directory
is kept then: ``history.jsonl``, each worker's log).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from tests.drill.drill import Options, Report, run


def summary(report: Report) -> str:
    rpo, rto, orders, re_decided = report.rpo, report.rto, report.orders, report.stats.get("re_decided", {})
    lines = [
        f"restore drill ({report.disaster}): {'PASS' if report.ok else 'FAIL'}   files: {report.workdir}",
        f"  phases (s): {report.phases}",
        f"  full backup {report.backup.get('label')}: {report.backup.get('size', 0):,} bytes, "
        f"{report.backup.get('repo_size', 0):,} in the repository, {report.backup.get('seconds')} s",
        f"  T = {report.target}",
        f"  checksums of {report.tables} tables at T == restored: {report.checksums_equal}"
        + (f" (differ: {report.mismatched_tables})" if report.mismatched_tables else ""),
        f"  inbox at T == restored: {report.inbox_equal}; conveyor reconcile clean: {report.reconcile_clean}",
        f"  orders: {orders.get('processed_at_t')} processed at T, {orders.get('processed_at_disaster')} at the "
        f"disaster; {orders.get('committed_after_t')} committed after T (gone by the restore, "
        f"{orders.get('committed_after_t_in_restore')} of them in it); the shop republished "
        f"{orders.get('republished')}: {orders.get('republished_committed_after_t')} committed after T, "
        f"{orders.get('republished_not_yet_processed')} still waiting in RabbitMQ (a second copy the inbox drops); "
        f"{re_decided.get('orders_announced_twice')} announced twice to partners "
        f"({re_decided.get('decision_changed')} with another decision)",
        f"  orders by status: {report.stats.get('orders_by_status')}",
        f"  RPO: data loss window {rpo.get('data_loss_window_s')} s (disaster {rpo.get('disaster_at')} - newest "
        f"archived commit {rpo.get('newest_archived_commit')}); restore to T stopped {rpo.get('target_gap_s')} s "
        f"before T (heartbeat every 0.1 s), past T: {rpo.get('restored_past_target')}",
        f"  RTO: {rto.get('seconds')} s from the disaster to workers consuming on the restored database "
        f"(restore + recovery {rto.get('restore_s')} s)",
    ]
    for name, items in report.problems.items():
        lines.append(f"  {name}: {'ok' if not items else f'{len(items)} problem(s)'}")
        lines += [f"    - {item}" for item in items[:10]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--disaster", choices=("lost-datadir", "drop-table"), default="lost-datadir")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0, help="order.created per second")
    parser.add_argument("--after-t", type=float, default=4.0, help="seconds of orders after T, before the disaster")
    parser.add_argument("--archive-timeout", type=int, default=5, help="the server's archive_timeout (s)")
    parser.add_argument("--workdir", help="keep the run's files here")
    parser.add_argument("--keep", action="store_true", help="keep the run's files even when it passes")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (progress on stderr)")
    args = parser.parse_args(argv)
    options = Options(disaster=args.disaster, seed=args.seed, rate=args.rate, after_t_s=args.after_t,
                      archive_timeout_s=args.archive_timeout, workdir=args.workdir, keep=args.keep)
    report = run(options, log=lambda line: print(line, file=sys.stderr if args.json else sys.stdout, flush=True))
    print(json.dumps(asdict(report), indent=2, default=str) if args.json else summary(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
