"""The restore drill in the suite, sized for CI (~45 s): workers under traffic, a full backup,
T, a lost data directory, a restore to T (``tests/drill/``, docs/backup.md). ``make drill``
runs the same on demand."""

from __future__ import annotations

import os
import shutil
from datetime import datetime

import pytest

from tests.drill.drill import Options, run
from tests.drill.run import summary

if shutil.which("pgbackrest") is None:
    if os.environ.get("CI") == "true":
        pytest.fail("pgbackrest is not installed; CI must run tests/setup-tools.sh before the tests",
                    pytrace=False)
    pytest.skip("pgbackrest is not installed (tests/setup-tools.sh installs it)", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_a_restore_to_t_gives_back_t_and_the_workers_resume_without_losing_or_doubling(tmp_path, capsys):
    # Given workers under traffic, a full backup and T, when the data directory is lost and
    # the cluster restored to T
    report = run(Options(seed=20261207, workdir=str(tmp_path)))
    with capsys.disabled():
        print(f"\n{summary(report)}")

    # Then the restored database is T's, exactly
    assert report.checksums_equal and report.tables >= 20, report.mismatched_tables
    assert report.inbox_equal and report.reconcile_clean
    # and the orders committed after T were gone, republished by the shop and processed once
    orders = report.orders
    assert orders["committed_after_t"] > 0 and orders["committed_after_t_in_restore"] == 0
    assert orders["republished_committed_after_t"] == orders["committed_after_t"]
    assert {name: items for name, items in report.problems.items() if items} == {}
    # and RPO and RTO were measured: the restore stopped within a heartbeat of T, the data loss
    # window is within archive_timeout plus a little, the workers resumed within a minute
    assert 0 <= report.rpo["target_gap_s"] <= 0.5 and not report.rpo["restored_past_target"]
    assert 0 <= report.rpo["data_loss_window_s"] <= Options().archive_timeout_s + 5
    assert datetime.fromisoformat(report.rpo["newest_archived_commit"]) > datetime.fromisoformat(report.target)
    assert 0 < report.rto["restore_s"] <= report.rto["seconds"] <= 60
    assert report.ok
