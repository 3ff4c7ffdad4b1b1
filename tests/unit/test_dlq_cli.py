"""`conveyor dlq` argument handling: what is refused before anything is touched (exit 2)."""

from __future__ import annotations

import pytest

from conveyor.workers.cli import build_parser
from conveyor.workers.dlq.audit import current_operator
from conveyor.workers.dlq.reader import resolve_dlq
from tests.support.dlq import dlq
from tests.support.workers import settings_for

# Nothing listens here: these commands must fail before connecting.
NOWHERE = settings_for("postgresql://nobody@127.0.0.1:9/none", "amqp://guest:guest@127.0.0.1:9/%2F")


@pytest.mark.parametrize("args", [
    ["replay", "orders"],                                  # no target
    ["replay", "orders", "--all", "--group", "abcdef"],    # two targets
    ["replay", "orders", "--all", "--rate", "fast"],
    ["replay", "orders", "--all", "--stop-after-failures", "0"],
    ["purge", "orders", "--all"],                          # purge has no --all
    ["purge", "orders", "--older-than", "soon"],
    ["list", "orders", "--since", "yesterday-ish"],
    ["list", "orders", "--limit", "-1"],
    ["audit", "--run", "not-a-uuid"],
])
def test_bad_arguments_exit_2_with_a_reason(args):
    result = dlq(NOWHERE, *args)

    assert result.code == 2 and result.err.strip()


def test_every_action_has_help():
    parser = build_parser()
    for action in ("stats", "list", "groups", "show", "replay", "purge", "export", "import", "audit"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["dlq", action, "--help"])
        assert exit_.value.code == 0


def test_an_import_file_with_a_bad_line_imports_nothing_and_exits_2(tmp_path):
    path = tmp_path / "dlq.jsonl"
    path.write_text('{"format": "conveyor-dlq-export/1", "queue": "q", "properties": {}, '
                    '"body_encoding": "utf-8", "body": ""}\nnot json\n')

    result = dlq(NOWHERE, "import", str(path))

    assert result.code == 2 and f"{path}:2: not JSON" in result.err


def test_a_missing_import_file_exits_4(tmp_path):
    assert dlq(NOWHERE, "import", str(tmp_path / "nope.jsonl")).code == 4


def test_queue_names_resolve_to_the_dlq():
    workers = {"orders": "conveyor.orders"}
    assert [resolve_dlq(n, workers) for n in ("orders", "conveyor.orders", "conveyor.orders.dlq", "x")] == [
        "conveyor.orders.dlq", "conveyor.orders.dlq", "conveyor.orders.dlq", "x.dlq"]


def test_the_operator_is_conveyor_operator_or_the_os_user():
    assert current_operator({"CONVEYOR_OPERATOR": " alice\x07 "}) == "alice"
    assert current_operator({}) not in ("", None)
    assert len(current_operator({"CONVEYOR_OPERATOR": "x" * 500})) == 128
