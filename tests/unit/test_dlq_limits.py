"""Delivery limits and DLQs without a broker: the version-aware DLQ declaration (a simulated 4.x
server version gets `x-delivery-limit: -1`, 3.x none), RabbitMQ's resolution of argument,
policy and operator policy into the effective limit, and the returns a message has left."""

from __future__ import annotations

import pika.exceptions
import pytest

from conveyor.workers.dlq import limits
from conveyor.workers.dlq.limits import ARGUMENT, OPERATOR_POLICY, POLICY, REPORTED, Policies, Source
from conveyor.workers.dlq.reader import _dlq_shapes
from conveyor.workers.runtime import topology
from conveyor.workers.runtime.spec import WorkerSpec

V3_10, V3_13, V4_0, V4_1 = (3, 10, 8), (3, 13, 7), (4, 0, 0), (4, 1, 0)
UNLIMITED = {"x-queue-type": "quorum", "x-delivery-limit": -1}
PLAIN = {"x-queue-type": "quorum"}


class FakeChannel:
    """Records queue declarations; ``refuse`` makes a declaration of that queue fail like the broker."""

    def __init__(self, connection: FakeConnection | None, refuse: tuple[int, str] | None = None) -> None:
        self.connection, self.refuse, self.closed = connection, refuse, False

    def queue_declare(self, queue: str, durable: bool = False, arguments: dict | None = None) -> None:
        if self.refuse and queue.endswith(".dlq"):
            raise pika.exceptions.ChannelClosedByBroker(*self.refuse)
        log = self.connection.declared if self.connection else []
        log.append((self, queue, dict(arguments or {})))

    def queue_bind(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeConnection:
    """A pika connection as far as the declaration looks: its broker's ``server_properties``."""

    def __init__(self, version: str | bytes | None, refuse: tuple[int, str] | None = None) -> None:
        self._impl = type("Impl", (), {"server_properties": {} if version is None else {"version": version}})()
        self.declared: list[tuple[FakeChannel, str, dict]] = []
        self.refuse = refuse
        self.channels: list[FakeChannel] = []

    def channel(self) -> FakeChannel:
        self.channels.append(FakeChannel(self, self.refuse))
        return self.channels[-1]


SPEC = WorkerSpec(name="orders", queue="conveyor.orders", bindings=(("orders", "order.created"),),
                  routes={})


@pytest.mark.parametrize(("version", "expected"), [
    (V3_10, PLAIN), (V3_13, PLAIN), (None, PLAIN), (V4_0, UNLIMITED), (V4_1, UNLIMITED), ((5, 0), UNLIMITED),
])
def test_the_dlq_is_declared_so_that_no_delivery_limit_applies_on_each_version(version, expected):
    assert topology.dlq_arguments(version) == expected


@pytest.mark.parametrize(("server_version", "parsed"), [
    ("3.10.8", V3_10), (b"4.1.0", V4_1), ("4.0.0-rc.2", V4_0), ("4.2", (4, 2)), ("", None), (None, None), (7, None),
])
def test_the_broker_version_is_read_from_the_server_properties(server_version, parsed):
    assert topology.broker_version(FakeConnection(server_version)) == parsed


@pytest.mark.parametrize(("server_version", "dlq_arguments", "own_channel"), [
    ("3.10.8", PLAIN, False),     # the worker's own channel, as before
    ("4.1.0", UNLIMITED, True),   # a channel of its own: a 406 from an older DLQ must not kill the worker's
])
def test_declare_worker_declares_the_dlq_for_the_broker_it_is_on(server_version, dlq_arguments, own_channel):
    connection = FakeConnection(server_version)
    channel = connection.channel()

    topology.declare_worker(channel, SPEC, retry_delays=(1,), delivery_limit=20)

    [(used, _, arguments)] = [d for d in connection.declared if d[1] == "conveyor.orders.dlq"]
    assert arguments == dlq_arguments
    assert (used is not channel) == own_channel and (not own_channel or used.closed)
    [work] = [d[2] for d in connection.declared if d[1] == "conveyor.orders"]
    assert work["x-delivery-limit"] == 20   # the work queue keeps its explicit limit


def test_on_4x_a_dlq_declared_before_the_upgrade_does_not_stop_the_worker():
    older = (406, "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'conveyor.orders.dlq': "
                  "received the value '-1' of type 'signedint' but current is none")
    connection = FakeConnection("4.1.0", refuse=older)

    topology.declare_dlq(FakeChannel(connection), "conveyor.orders.dlq")   # no exception

    assert connection.declared == []


@pytest.mark.parametrize("refusal", [(406, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl'"),
                                     (403, "ACCESS_REFUSED - configure access to 'x-delivery-limit'")])
def test_on_4x_any_other_refusal_of_the_dlq_still_fails(refusal):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        topology.declare_dlq(FakeChannel(FakeConnection("4.1.0", refuse=refusal)), "conveyor.orders.dlq")


@pytest.mark.parametrize(("version", "shapes"), [(V3_10, [PLAIN, UNLIMITED]), (V4_1, [UNLIMITED, PLAIN]),
                                                 (None, [PLAIN, UNLIMITED])])
def test_the_console_rechecks_the_shape_declared_for_this_version_first(version, shapes):
    assert _dlq_shapes(version) == shapes


# (argument, policy, operator policy) -> limit, as RabbitMQ 4.x resolves it (its unit test
# ra_machine_conf_delivery_limit): a non-negative value wins, the smallest; only negatives lift it.
@pytest.mark.parametrize(("argument", "policy", "operator_policy", "limit"), [
    (None, None, None, 20), (-1, None, None, None), (None, -1, None, None), (5, -1, None, 5), (-1, 5, None, 5),
    (-1, -1, 5, 5), (-1, 5, -1, 5), (5, -1, -1, 5), (-1, 10, 5, 5), (15, 5, 10, 5), (-1, -1, -1, None),
])
def test_the_effective_limit_on_4x_follows_rabbitmq(argument, policy, operator_policy, limit):
    assert limits.effective_limit(V4_1, _sources(argument, policy, operator_policy))[0] == limit


@pytest.mark.parametrize(("argument", "policy", "limit"), [
    (None, None, None), (-1, None, 0), (None, 5, 5), (8, 5, 5), (None, -1, 0),
])
def test_the_effective_limit_on_3x_has_no_default_and_a_negative_value_acts_as_0(argument, policy, limit):
    assert limits.effective_limit(V3_10, _sources(argument, policy, None))[0] == limit


def test_an_unknown_broker_version_is_read_the_strict_way():
    assert limits.effective_limit(None, ())[0] == limits.DEFAULT_LIMIT_SINCE_4
    assert limits.effective_limit(None, _sources(-1, None, None))[0] == 0


def test_a_limit_the_broker_reports_counts_even_when_a_policy_lifts_it():
    # Given a 4.x queue whose policy says -1 but which still runs with 20 (policy not applied to it)
    found = limits.assess(V4_1, -1, Policies((Source(POLICY, -1, "lift"), Source(REPORTED, 20))))

    assert (found.limit, found.policies_checked) == (20, True)
    assert "the broker's report" in found.reason


def test_without_the_management_api_the_limit_says_policies_were_not_checked():
    found = limits.assess(V4_1, -1, None)

    assert found.as_json() == {"limit": None, "reason": "lifted: queue argument x-delivery-limit = -1",
                               "policies_checked": False, "broker_version": "4.1.0"}


@pytest.mark.parametrize(("found", "advice"), [
    (limits.assess(V4_1, None, None), "declared before RabbitMQ 4"),
    (limits.assess(V3_10, None, Policies((Source(OPERATOR_POLICY, 3, "ops-cap"),))), "Remove delivery-limit"),
])
def test_the_refusal_names_the_cause_and_the_fix(found, advice):
    text = limits.refusal("conveyor.orders.dlq", found)

    assert f"a delivery limit of {found.limit}" in text and advice in text and "--accept-delivery-limit" in text


@pytest.mark.parametrize(("headers", "left"), [
    (None, 19), ({"x-delivery-count": 13}, 6), ({"x-delivery-count": 2, "x-acquired-count": 9}, 10),
    ({"x-delivery-count": "13"}, 19), ({"x-delivery-count": True}, 19),
])
def test_returns_left_counts_the_broker_markers(headers, left):
    assert limits.returns_left(20, headers) == left


def _sources(argument: int | None, policy: int | None, operator_policy: int | None) -> tuple[Source, ...]:
    given = [(ARGUMENT, argument, ""), (POLICY, policy, "p"), (OPERATOR_POLICY, operator_policy, "o")]
    return tuple(Source(kind, value, name) for kind, value, name in given if value is not None)
