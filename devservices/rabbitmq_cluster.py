"""A RabbitMQ cluster of our own (3 nodes by default) from the installed binaries, for the
cluster chaos plan and the cluster benchmark; never the machine's broker.

Each node is a ``RestartableRabbitMQ`` with its own node name (``conveyor-<id>-<n>@localhost``),
AMQP port, distribution port, data and log directories and its own epmd; the nodes share one
Erlang cookie. Node 1 boots first; the others find it through classic-config peer discovery
and join it at their first boot (``cluster_partition_handling = pause_minority``).

**How the nodes find each other, and how a partition is made.** An Erlang node asks the
epmd of the peer's host for the peer's distribution port. Every node here has an epmd of its
own, and in it *we* register the other nodes' names (epmd's ``ALIVE2_REQ``, the registration
a node makes for itself) with the port of a TCP link proxy per ordered pair (``links=True``,
the default) — or with the peer's real distribution port (``links=False``: no proxy in the
path, for benchmarks). So every byte between two nodes passes through a link we hold, and
``partition(i)`` cuts node *i* off for real: every link from or to it resets its connections
and refuses new ones (the nodes see ``nodedown`` at once; node *i*, alone, is the minority
and pauses: its listeners close, its clients go to the other nodes), ``heal()`` lets them
through again. No iptables, no netem: nothing outside these processes changes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from conveyor.devservices.base import START_TIMEOUT_S, TEMP_PREFIX, DevServicesError
from conveyor.devservices.processes import _free_ports, _sweep_stale_temp_dirs, _wait_until
from conveyor.devservices.rabbitmq import (
    RestartableRabbitMQ,
    _minimal_plugins_dir,
    _rabbitmq_env,
    _without_rabbitmq_settings,
    rabbitmq_bindir,
)


class ClusterNode(RestartableRabbitMQ):
    """One node of a ``RabbitCluster``: the name, ports, cookie and peers are given."""

    def __init__(self, *, workdir: str, node: str, amqp_port: int, dist_port: int, epmd_port: int,
                 cookie: str, seed: str | None) -> None:
        super().__init__(workdir=workdir)
        self.node, self.amqp_port, self.dist_port, self._epmd_port = node, amqp_port, dist_port, epmd_port
        self.epmd_port = epmd_port
        self._cookie, self._seed = cookie, seed

    def _prepare(self) -> None:
        os.mkdir(self.workdir, 0o700)
        self.bindir = rabbitmq_bindir()
        self.overrides = _rabbitmq_env(self.workdir, node=self.node, amqp_port=self.amqp_port,
                                       dist_port=self.dist_port, epmd_port=self._epmd_port)
        cookie = os.path.join(self.workdir, ".erlang.cookie")
        with open(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "w") as handle:
            handle.write(self._cookie)
        open(os.path.join(self.workdir, "rabbitmq-env.conf"), "w").close()
        with open(os.path.join(self.workdir, "enabled_plugins"), "w") as handle:
            handle.write("[].\n")
        config = [f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}", "log.console = true",
                  "log.console.level = info", "cluster_partition_handling = pause_minority"]
        if self._seed:  # join the seed at the first boot (a node that is a member already ignores it)
            config += ["cluster_formation.peer_discovery_backend = classic_config",
                       f"cluster_formation.classic_config.nodes.1 = {self._seed}",
                       "cluster_formation.randomized_startup_delay_range.min = 0",
                       "cluster_formation.randomized_startup_delay_range.max = 1"]
        with open(os.path.join(self.workdir, "rabbitmq.conf"), "w") as handle:
            handle.write("\n".join(config) + "\n")
        plugins_dir = _minimal_plugins_dir(self.bindir, os.path.join(self.workdir, "plugins"), ["rabbit"])
        if plugins_dir:
            self.overrides["RABBITMQ_PLUGINS_DIR"] = plugins_dir
        # OTP 25's global turns a node that restarts quickly into an "overlapping partition" and
        # hangs the others' global sync (RabbitMQ logs "Global hang workaround" after 20 s, a
        # restart then took ~50 s here); RabbitMQ's own partition handling is what decides.
        self.overrides["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] += os.environ.get(
            "CONVEYOR_CLUSTER_ERL_ARGS", " -kernel prevent_overlapping_partitions false")
        self._env = {**_without_rabbitmq_settings(os.environ), **self.overrides}
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    def boot(self) -> None:
        """Start the node's process (again) without waiting for it."""
        self._boot()

    def rabbitmq_queues(self, *args: str, timeout: float = 60) -> str:
        from conveyor.devservices.processes import _run_checked

        argv = [os.path.join(self.bindir, "rabbitmq-queues"), "-n", self.node, *args]
        return _run_checked(argv, env=self._env, what=f"rabbitmq-queues {' '.join(args[:1])}", timeout=timeout)


class RabbitCluster:
    """``with RabbitCluster(3) as cluster:`` three clustered nodes; ``amqp_urls`` one URL per
    node (default vhost, ``guest``). ``kill(i)``/``stop(i)``/``start(i)`` act on one node,
    ``partition(i)``/``heal()`` on its links (``links=True``), ``rolling_restart()`` restarts
    each node in turn, ``leaders()`` says which node leads each quorum queue."""

    def __init__(self, size: int = 3, *, links: bool = True) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.size = size
        self.links_enabled = links
        self.nodes: list[ClusterNode] = []
        self.links: dict[tuple[int, int], _Link] = {}
        self.partitioned: set[int] = set()
        self._stack = ExitStack()

    # -- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> "RabbitCluster":
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _open(self) -> None:
        _sweep_stale_temp_dirs()
        base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
        self._stack.callback(shutil.rmtree, base, ignore_errors=True)
        self.workdir = base
        cluster_id, cookie = secrets.token_hex(3), secrets.token_hex(16).upper()
        ports = _free_ports(3 * self.size)
        names = [f"conveyor-{cluster_id}-{n + 1}@localhost" for n in range(self.size)]
        for n in range(self.size):
            amqp_port, dist_port, epmd_port = ports[3 * n:3 * n + 3]
            self.nodes.append(ClusterNode(workdir=os.path.join(base, f"node{n + 1}"), node=names[n],
                                          amqp_port=amqp_port, dist_port=dist_port, epmd_port=epmd_port,
                                          cookie=cookie, seed=names[0] if n else None))
        for node in self.nodes:
            node._prepare()
            node._start_epmd()
            node._stack.callback(node.kill)
            self._stack.callback(node._stack.close)
        # Every node's epmd learns the others' ports: through a link of ours, or the real one.
        for i, here in enumerate(self.nodes):
            for j, peer in enumerate(self.nodes):
                if i == j:
                    continue
                port = peer.dist_port
                if self.links_enabled:
                    link = _Link(peer.dist_port)
                    self._stack.callback(link.close)
                    self.links[(i, j)] = link
                    port = link.port
                registration = _EpmdRegistration(here.epmd_port, peer.node.split("@")[0], port)
                self._stack.callback(registration.close)
        self.nodes[0].boot()
        self.nodes[0].wait_ready()
        for node in self.nodes[1:]:
            node.boot()
        for node in self.nodes[1:]:
            node.wait_ready()
        self.wait_clustered()

    # -- where things are --------------------------------------------------------------------------

    @property
    def amqp_urls(self) -> list[str]:
        return [node.amqp_url for node in self.nodes]

    @property
    def amqp_url(self) -> str:
        return self.nodes[0].amqp_url

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def index_of(self, node_name: str) -> int:
        return next(i for i, node in enumerate(self.nodes) if node.node == node_name)

    def any_running(self, *, exclude: set[int] = frozenset()) -> ClusterNode:  # type: ignore[assignment]
        for i, node in enumerate(self.nodes):
            if node.running and i not in exclude and i not in self.partitioned:
                return node
        raise DevServicesError("no cluster node is running")

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl ARGS`` on a running node of the majority."""
        return self.any_running().rabbitmqctl(*args, timeout=timeout)

    def cluster_status(self, node: ClusterNode | None = None) -> dict:
        out = (node or self.any_running()).rabbitmqctl("cluster_status", "--formatter", "json", timeout=30)
        return json.loads(out)

    def quorum_queues(self) -> dict[str, tuple[str, list[str]]]:
        """queue -> (the node leading it, its members), for every quorum queue of the default vhost.

        Read with ``eval`` on one node from its own records: ``list_queues`` would have every
        node stream its rows to the CLI, and the other nodes cannot look the CLI's node up (it
        registers in the epmd of the node it talks to, and each node has its own)."""
        out = self.rabbitmqctl("eval", _QUORUM_QUEUES, timeout=30)
        found = {}
        for name, leader, members in re.findall(r"\{<<\"((?:[^\"\\]|\\.)*)\">>,\s*'([^']+)',\s*\[([^\]]*)\]\}", out):
            found[name] = (leader, [m.strip().strip("'") for m in members.split(",") if m.strip()])
        return found

    def leaders(self, prefix: str = "") -> dict[str, str]:
        """queue -> the node that leads it, for every quorum queue whose name starts with ``prefix``."""
        return {name: leader for name, (leader, _) in self.quorum_queues().items() if name.startswith(prefix)}

    def leader_node(self, prefix: str = "") -> int:
        """The index of the node leading most of the quorum queues starting with ``prefix``."""
        counts: dict[str, int] = {}
        for node in self.leaders(prefix).values():
            counts[node] = counts.get(node, 0) + 1
        if not counts:
            raise DevServicesError(f"no quorum queue {prefix}* has a leader")
        return self.index_of(max(sorted(counts), key=counts.__getitem__))

    def members(self, queue: str) -> list[str]:
        return self.quorum_queues().get(queue, ("", []))[1]

    # -- faults --------------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (its data stays for the next start)."""
        self.nodes[i].kill()

    def stop(self, i: int) -> None:
        """Stop node ``i`` as a restart does (SIGTERM)."""
        self.nodes[i].stop()

    def start(self, i: int, *, timeout: float = 3 * START_TIMEOUT_S) -> None:
        """Boot node ``i`` again and wait until it is back in the cluster (a restart under load
        on two shared cores took 10-16 s, once over 60 s: the longer wait is not a slack)."""
        node = self.nodes[i]
        if not node.running:
            node.start(timeout=timeout)  # its AMQP listener opens once it has rejoined and booted

    def start_missing(self) -> None:
        for i, node in enumerate(self.nodes):
            if not node.running:
                self.start(i)

    def partition(self, i: int) -> int:
        """Cut node ``i`` off from the others; returns how many node-to-node connections were cut."""
        if not self.links_enabled:
            raise DevServicesError("this cluster was started without links (links=False): it cannot partition")
        self.partitioned.add(i)
        cut = 0
        for (a, b), link in self.links.items():
            if i in (a, b):
                link.refuse = True
                cut += link.reset_all()
        return cut

    def heal(self, *, timeout: float = 90) -> None:
        """Let every link through again and wait until the paused minority node answers again
        (it resumes by itself once it sees the majority)."""
        for link in self.links.values():
            link.refuse = False
        healed, self.partitioned = self.partitioned, set()
        for i in sorted(healed):
            node = self.nodes[i]
            if node.running and not _wait_until(node._answers, timeout):
                raise DevServicesError(f"node {node.node} did not resume within {timeout:g} s of the heal")

    def wait_clustered(self, *, timeout: float = 90) -> None:
        """Until every node runs, sees all the others running and no partition."""
        names = sorted(node.node for node in self.nodes)

        def together() -> bool:
            for node in self.nodes:
                if not node.running:
                    return False
                try:
                    status = self.cluster_status(node)
                except (DevServicesError, ValueError):
                    return False
                if sorted(status.get("running_nodes", [])) != names or status.get("partitions"):
                    return False
            return True

        if not _wait_until(together, timeout):
            raise DevServicesError(f"the cluster did not come together in {timeout:g} s: "
                                   f"{[n.node for n in self.nodes if not n.running]} down")

    def wait_not_quorum_critical(self, i: int, *, timeout: float = 60) -> None:
        """Until stopping node ``i`` would leave every quorum queue with a quorum (what RabbitMQ's
        rolling-upgrade guide asks before each node: ``check_if_node_is_quorum_critical``)."""
        node = self.nodes[i]

        def safe() -> bool:
            try:
                node.rabbitmq_queues("check_if_node_is_quorum_critical", timeout=30)
                return True
            except DevServicesError:
                return False

        if not _wait_until(safe, timeout):
            raise DevServicesError(f"node {node.node} stayed quorum-critical for {timeout:g} s")

    def rolling_restart(self, *, down_s: float = 0.0,
                        on_step: Callable[[int, str], None] = lambda i, what: None) -> list[dict]:
        """Restart each node in turn: wait until it is not quorum-critical, stop it (SIGTERM),
        start it, wait until it is back in the cluster. Returns the timings per node."""
        steps = []
        for i in range(self.size):
            started = time.monotonic()
            self.wait_not_quorum_critical(i)
            waited = time.monotonic() - started
            on_step(i, "stop")
            self.stop(i)
            time.sleep(down_s)
            on_step(i, "start")
            self.start(i)
            steps.append({"node": i + 1, "waited_for_quorum_s": round(waited, 1),
                          "restart_s": round(time.monotonic() - started - waited, 1)})
        return steps


# Each quorum queue as {<<"name">>, 'leader@host', ['member@host', ...]}.
_QUORUM_QUEUES = (
    "[{element(4, amqqueue:get_name(Q)), element(2, amqqueue:get_pid(Q)), "
    "maps:get(nodes, amqqueue:get_type_state(Q), [])} "
    "|| Q <- rabbit_amqqueue:list(<<\"/\">>), amqqueue:get_type(Q) =:= rabbit_quorum_queue].")


class _EpmdRegistration:
    """A name registered in an epmd (``ALIVE2_REQ``) for as long as the socket stays open."""

    def __init__(self, epmd_port: int, name: str, port: int) -> None:
        encoded = name.encode()
        # 'x', port, node type 77 (normal), protocol 0 (tcp/ipv4), highest 6, lowest 5, name, no extra
        body = struct.pack(">BHBBHHH", 120, port, 77, 0, 6, 5, len(encoded)) + encoded + struct.pack(">H", 0)
        self._sock = socket.create_connection(("127.0.0.1", epmd_port), timeout=5)
        self._sock.sendall(struct.pack(">H", len(body)) + body)
        reply = self._sock.recv(16)
        if len(reply) < 2 or reply[0] not in (118, 121) or reply[1] != 0:
            self._sock.close()
            raise DevServicesError(f"epmd on :{epmd_port} refused to register {name}: {reply!r}")

    def close(self) -> None:
        self._sock.close()


class _Link:
    """A TCP proxy in front of one node's distribution port for one peer: a plain pipe until
    ``refuse`` is set (``reset_all()`` cuts what is open; new connections are closed at once)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refuse = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="rabbit-link").start()

    def reset_all(self) -> int:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _abort(sock)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset_all()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                _abort(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                _abort(client)
                continue
            pair = (client, server)
            with self._lock:
                self._pairs.append(pair)
            for source, sink in (pair, (server, client)):
                threading.Thread(target=self._pump, args=(source, sink, pair), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self.refuse:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in pair:
                _abort(sock)
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)


def _abort(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a cut connection looks to the peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


@contextmanager
def rabbit_cluster(size: int = 3, *, links: bool = True) -> Iterator[RabbitCluster]:
    with RabbitCluster(size, links=links) as cluster:
        yield cluster
