"""RabbitMQ nodes of our own from the installed binaries (own node name, ports, cookie and
epmd): the throwaway node with the management API, and a restartable one for fault tests."""

from __future__ import annotations

import glob
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

from conveyor.devservices.base import START_TIMEOUT_S, TEMP_PREFIX, DevServicesError, Services
from conveyor.devservices.probes import _amqp_problem
from conveyor.devservices.processes import (
    _die_with_parent,
    _free_ports,
    _port_open,
    _run_checked,
    _still_running,
    _stop_process,
    _sweep_stale_temp_dirs,
    _tail,
    _wait_until,
)
from conveyor.devservices.vhosts import _auth_header


def rabbitmq_bindir() -> str:
    """Directory of the real rabbitmq-server/rabbitmqctl scripts (not Debian's su wrapper)."""
    found = shutil.which("rabbitmq-server") or shutil.which("rabbitmq-server", path="/usr/sbin:/usr/local/sbin:/sbin")
    candidates = [os.path.dirname(os.path.realpath(found))] if found else []
    candidates.append("/usr/lib/rabbitmq/bin")
    for bindir in candidates:
        server = os.path.join(bindir, "rabbitmq-server")
        if os.access(server, os.X_OK) and os.access(os.path.join(bindir, "rabbitmqctl"), os.X_OK):
            return os.path.dirname(os.path.realpath(server))  # .../rabbitmq_server-<vsn>/sbin
    raise DevServicesError("no RabbitMQ binaries (rabbitmq-server, rabbitmqctl) found; install rabbitmq-server")


def _minimal_plugins_dir(bindir: str, dest: str, roots: list[str]) -> str | None:
    """Symlink only the apps ``roots`` depend on into ``dest``; None if that cannot be worked out.

    At boot RabbitMQ reads every app on its plugins path (schemas, feature flags, module
    attributes); with the ~70 bundled apps cut to the ~25 needed it is ready ~1 s sooner.
    """
    full = os.path.join(os.path.dirname(bindir), "plugins")
    try:
        entries = os.listdir(full)
    except OSError:
        return None
    available: dict[str, str] = {}
    for entry in entries:
        match = re.match(r"^(?P<app>[a-z0-9_]+)-[0-9][^/]*$", entry)
        if match is None or entry.endswith(".ez"):
            return None  # archives or unknown layout: let RabbitMQ use everything
        available[match["app"]] = os.path.join(full, entry)
    needed: set[str] = set()
    todo = list(roots)
    while todo:
        app = todo.pop()
        if app in needed or app not in available:  # OTP's own apps (kernel, ssl, ...) live elsewhere
            continue
        needed.add(app)
        try:
            with open(os.path.join(available[app], "ebin", f"{app}.app")) as handle:
                spec = handle.read()
        except OSError:
            return None
        for key in ("applications", "included_applications", "optional_applications"):
            listed = re.search(rf"\{{\s*{key}\s*,\s*\[([^\]]*)\]", spec)
            if listed:
                todo += [name.strip() for name in listed.group(1).split(",") if name.strip()]
    if not set(roots) <= needed:
        return None
    os.mkdir(dest)
    for app in needed:
        os.symlink(available[app], os.path.join(dest, os.path.basename(available[app])))
    return dest


def _epmd_path() -> str:
    found = shutil.which("epmd") or next(iter(sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"), reverse=True)), None)
    if not found:
        raise DevServicesError("no epmd (Erlang) found")
    return found


@contextmanager
def _throwaway_rabbitmq(workdir: str) -> Iterator[Callable[[], tuple[Services, str]]]:
    """Boot a RabbitMQ node with the management API in ``workdir`` and yield at once a function
    that waits until *this* node answers and returns (Services without a database URL,
    detail), so the caller can set PostgreSQL up meanwhile. The node is killed on exit
    (SIGKILL: its data is thrown away, and a graceful stop with the management plugin takes
    ~5.5 s, waiting on its stats collector)."""
    started = time.monotonic()
    node = RestartableRabbitMQ(workdir=workdir, management=True)
    with node.opened(wait=False):
        def ready() -> tuple[Services, str]:
            node.wait_ready()
            services = Services(
                "", node.amqp_url, "local-binaries", management_url=node.management_url,
                rabbitmqctl=(os.path.join(node.bindir, "rabbitmqctl"), "-n", node.node),
                rabbitmqctl_env=tuple(sorted(node.overrides.items())),
            )
            detail = f"RabbitMQ node {node.node} on :{node.amqp_port} ready in {time.monotonic() - started:.1f} s"
            return services, detail

        yield ready


def _is_our_node(api: str, amqp_url: str, node: str, amqp_port: int) -> bool:
    request = urllib.request.Request(f"{api}/overview", headers=_auth_header(amqp_url))
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            overview = json.load(response)
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return overview.get("node") == node and any(
        listener.get("protocol") == "amqp" and listener.get("port") == amqp_port and listener.get("node") == node
        for listener in overview.get("listeners", [])
    )


def _rabbitmq_env(workdir: str, *, node: str, amqp_port: int, dist_port: int, epmd_port: int) -> dict[str, str]:
    """Environment overrides for the node and for rabbitmqctl talking to it (HOME holds the cookie)."""
    return {
        "HOME": workdir,
        "RABBITMQ_CONF_ENV_FILE": os.path.join(workdir, "rabbitmq-env.conf"),  # not /etc/rabbitmq's
        "RABBITMQ_CONFIG_FILE": os.path.join(workdir, "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(workdir, "enabled_plugins"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": os.path.join(workdir, "mnesia"),
        "RABBITMQ_LOG_BASE": os.path.join(workdir, "log"),
        "RABBITMQ_PID_FILE": os.path.join(workdir, "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        # Makes rabbitmq-server exec the VM instead of running it as a child of a shell,
        # so the parent-death signal and our process-group kill reach beam itself.
        "RUNNING_UNDER_SYSTEMD": "true",
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


def _without_rabbitmq_settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith(("RABBITMQ_", "ERL_EPMD_"))}


def _write_rabbitmq_files(workdir: str, *, amqp_port: int, http_port: int | None) -> None:
    """Cookie, empty env file, config on loopback only; the management plugin when ``http_port``."""
    cookie = os.path.join(workdir, ".erlang.cookie")
    with open(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "w") as handle:
        handle.write(secrets.token_hex(16).upper())
    open(os.path.join(workdir, "rabbitmq-env.conf"), "w").close()
    with open(os.path.join(workdir, "enabled_plugins"), "w") as handle:
        # management: +~0.4 s at boot; a vhost then costs ~40 ms, not ~1.3 s through rabbitmqctl
        handle.write("[rabbitmq_management].\n" if http_port else "[].\n")
    config = [f"listeners.tcp.1 = 127.0.0.1:{amqp_port}", "log.console = true"]
    if http_port:
        config += [f"management.tcp.port = {http_port}", "management.tcp.ip = 127.0.0.1", "log.file.level = warning"]
    with open(os.path.join(workdir, "rabbitmq.conf"), "w") as handle:
        handle.write("\n".join(config) + "\n")


class RestartableRabbitMQ:
    """A RabbitMQ node of our own, for tests that crash and restart the broker; never the
    machine's. ``with RestartableRabbitMQ() as broker:`` starts it; ``broker.stop()`` stops
    it as a restart would, ``broker.kill()`` crashes it (SIGKILL; what was declared in the
    last moments may be lost), ``broker.start()`` boots it again on the same port with the
    same data (durable queues and persistent messages survive); leaving the block deletes it.
    ``amqp_url`` is its default vhost as ``guest``.

    Its own node name, ports, cookie and epmd (on a private port: nothing shared with the
    machine's broker, nothing left running afterwards). The throwaway node of the suite and
    the demo is this class in a given ``workdir`` with ``management=True``.
    """

    def __init__(self, *, workdir: str | None = None, management: bool = False) -> None:
        self._stack = ExitStack()
        self._server: subprocess.Popen | None = None
        self._own_workdir = workdir is None
        self.workdir = workdir or ""
        self.management = management
        self.amqp_url = ""
        self.management_url: str | None = None
        self.bindir = ""
        self.node = ""
        self.amqp_port = 0
        self.overrides: dict[str, str] = {}

    def __enter__(self) -> "RestartableRabbitMQ":
        self._open(wait=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @contextmanager
    def opened(self, *, wait: bool) -> Iterator["RestartableRabbitMQ"]:
        """The node booted (and, with ``wait``, answering); deleted on leaving."""
        self._open(wait=wait)
        try:
            yield self
        finally:
            self._stack.close()

    def _open(self, *, wait: bool) -> None:
        try:
            self._prepare()
            self._start_epmd()
            self._stack.callback(self.kill)
            self._boot()
            if wait:
                self.wait_ready()
        except BaseException:
            self._stack.close()
            raise

    def _prepare(self) -> None:
        if self._own_workdir:
            _sweep_stale_temp_dirs()
            base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
            self._stack.callback(shutil.rmtree, base, ignore_errors=True)
            self.workdir = os.path.join(base, "rabbitmq")
        os.mkdir(self.workdir, 0o700)
        self.bindir = rabbitmq_bindir()
        self.amqp_port, dist_port, self._epmd_port, http_port = _free_ports(4)
        self.node = f"conveyor-{secrets.token_hex(4)}@localhost"
        self.overrides = _rabbitmq_env(self.workdir, node=self.node, amqp_port=self.amqp_port,
                                       dist_port=dist_port, epmd_port=self._epmd_port)
        _write_rabbitmq_files(self.workdir, amqp_port=self.amqp_port, http_port=http_port if self.management else None)
        roots = ["rabbit", "rabbitmq_management"] if self.management else ["rabbit"]
        plugins_dir = _minimal_plugins_dir(self.bindir, os.path.join(self.workdir, "plugins"), roots)
        if plugins_dir:
            self.overrides["RABBITMQ_PLUGINS_DIR"] = plugins_dir
        self._env = {**_without_rabbitmq_settings(os.environ), **self.overrides}
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"
        self.management_url = f"http://127.0.0.1:{http_port}/api" if self.management else None

    def _start_epmd(self) -> None:
        epmd = subprocess.Popen(
            [_epmd_path(), "-port", str(self._epmd_port), "-address", "127.0.0.1"],
            env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
        )
        self._stack.callback(_stop_process, epmd, signal.SIGTERM, grace=2)
        if not (_wait_until(lambda: _port_open(self._epmd_port), 10, alive=epmd) and _still_running(epmd)):
            raise DevServicesError(f"epmd did not start on port {self._epmd_port}")

    def _boot(self) -> None:
        self._log_path = os.path.join(self.workdir, "server.out")
        with open(self._log_path, "ab") as log_file:
            self._server = subprocess.Popen(
                [os.path.join(self.bindir, "rabbitmq-server")], cwd=self.workdir, env=self._env,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
            )

    def _answers(self) -> bool:
        """*Our* node answers (not whatever else may hold one of "our" ports)."""
        if self.management_url:
            return (_is_our_node(self.management_url, self.amqp_url, self.node, self.amqp_port)
                    and _amqp_problem(self.amqp_url) is None)
        return _port_open(self.amqp_port) and _amqp_problem(self.amqp_url) is None

    def wait_ready(self, *, timeout: float = START_TIMEOUT_S) -> None:
        if not _wait_until(self._answers, timeout, alive=self._server):
            raise DevServicesError(f"RabbitMQ node {self.node} did not start; its log says:\n{_tail(self._log_path)}")

    def start(self, *, timeout: float = START_TIMEOUT_S) -> None:
        """Boot the node (again) and wait until it accepts AMQP connections."""
        self._boot()
        self.wait_ready(timeout=timeout)

    def stop(self) -> None:
        """Stop the node the way a restart does (SIGTERM: clients get 320 CONNECTION_FORCED).
        Unlike ``kill()``, nothing declared or confirmed just before can be lost."""
        if self._server is not None:
            _stop_process(self._server, signal.SIGTERM, grace=30)
            self._server = None

    def kill(self) -> None:
        """Crash the node (SIGKILL to its process group); its data stays for the next start."""
        if self._server is not None:
            _stop_process(self._server, signal.SIGKILL, grace=5)
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl ARGS`` against this node (never the machine's); returns its output.
        E.g. ``close_all_connections REASON``, ``set_vm_memory_high_watermark 0.0000001``."""
        argv = [os.path.join(self.bindir, "rabbitmqctl"), "-n", self.node, *args]
        return _run_checked(argv, env=self._env, what=f"rabbitmqctl {' '.join(args[:1])}", timeout=timeout)
