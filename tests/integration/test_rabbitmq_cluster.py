"""Against a 3-node RabbitMQ cluster of our own (``conveyor.devservices.rabbitmq_cluster``):
the replica count of the quorum queues Conveyor creates, why it may only be given to a queue
that does not exist yet (RabbitMQ refuses a declare whose group size differs), and the failover
of ``amqp.connect`` when the first node of CONVEYOR_AMQP_URLS is down."""

from __future__ import annotations

import pika
import pytest

from conveyor.devservices.rabbitmq_cluster import RabbitCluster
from conveyor.workers.bootstrap import WORKERS, declare_topology
from conveyor.workers.config import Settings
from conveyor.workers.runtime import amqp, topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster():
    with RabbitCluster(3, links=False) as started:
        yield started


def settings_for(cluster: RabbitCluster, **extra) -> Settings:
    return Settings(amqp_urls=tuple(cluster.amqp_urls), retry_delays=(1, 5), **extra)


def conveyor_queues(cluster: RabbitCluster) -> dict[str, list[str]]:
    return {name: members for name, (_, members) in cluster.quorum_queues().items() if name.startswith("conveyor.")}


def test_new_quorum_queues_get_the_replica_count_and_existing_ones_are_left_alone(cluster):
    # Given a topology declared with two replicas per quorum queue
    declare_topology(settings_for(cluster, quorum_replicas=2))
    first = conveyor_queues(cluster)
    expected = {q for spec in WORKERS.values() for q in (spec.queue, topology.dlq_name(spec.queue))}
    assert expected <= set(first) and topology.UNROUTED in first   # unrouted is quorum on a cluster
    assert all(len(members) == 2 for members in first.values()), first

    # When workers declare it again with another count (or the broker's default)
    declare_topology(settings_for(cluster, quorum_replicas=3))

    # Then nothing is refused and the queues keep what they were created with
    assert conveyor_queues(cluster) == first


def test_the_broker_refuses_a_declare_with_another_group_size(cluster):
    # The reason for the passive declare first (checked on 3.10.8): any difference is a 406.
    connection = pika.BlockingConnection(pika.URLParameters(cluster.amqp_urls[1]))
    try:
        channel = connection.channel()
        channel.queue_declare("check.group-size", durable=True,
                              arguments={"x-queue-type": "quorum", topology.QUORUM_GROUP_SIZE: 2})
        for arguments in ({"x-queue-type": "quorum"}, {"x-queue-type": "quorum", topology.QUORUM_GROUP_SIZE: 3}):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                connection.channel().queue_declare("check.group-size", durable=True, arguments=arguments)
            assert refused.value.reply_code == 406 and topology.QUORUM_GROUP_SIZE in refused.value.reply_text
        # while declare_quorum leaves it as it is
        topology.declare_quorum(connection.channel(), "check.group-size", {"x-queue-type": "quorum"}, replicas=3)
    finally:
        connection.close()
    assert len(cluster.members("check.group-size")) == 2


def test_a_connection_skips_a_node_that_is_down(cluster, monkeypatch):
    # Given the first node of the list down
    monkeypatch.setattr(amqp, "_START", 0)
    monkeypatch.setattr(amqp, "_warned", set())
    cluster.kill(0)
    try:
        # When a worker connects
        connection = amqp.connect(settings_for(cluster), name="failover-test")
        try:
            # Then it is on the second node, and works there
            assert connection._impl.params.port == cluster.nodes[1].amqp_port
            channel = connection.channel()
            assert channel.queue_declare(WORKERS["orders"].queue, passive=True).method.consumer_count == 0
        finally:
            connection.close()
    finally:
        cluster.start(0)
    assert cluster.nodes[0].running
