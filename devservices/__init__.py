"""PostgreSQL and RabbitMQ for the demo, the benchmark and the test suite.

This module owns *finding or starting* the two servers and *isolating* each user of
them; it owns no schema (``conveyor.db.migrate``) and no broker topology. Sources, in order:

1. ``CONVEYOR_DATABASE_URL`` + ``CONVEYOR_AMQP_URL`` from the environment, used only if
   both answer a quick probe (2 s timeouts).
2. testcontainers (``postgres:15``, ``rabbitmq:3.10-management``), only where a Docker
   engine answers; testcontainers is imported lazily.
3. Throwaway servers started from the installed binaries, on free loopback ports, in a
   temp directory that is deleted at the end. They die with this process (parent-death
   signal) if it is killed before it can clean up; stale temp directories of dead
   processes are swept at the next start.

Isolation: :func:`fresh_database` (optionally cloned from a template with
``CREATE DATABASE ... TEMPLATE``, ~50-150 ms here) and :func:`fresh_vhost`. A vhost is
created and deleted through the management HTTP API when one answers (~40 ms in all),
else ``rabbitmqctl`` (an Erlang CLI boot per call, ~0.4 s; three calls, ~1.3 s per
vhost), else ``docker exec rabbitmqctl`` in the testcontainer.

Never touches the machine's own servers beyond creating and dropping the uniquely
named databases and vhosts it hands out.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import glob
import http.client
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import psycopg
from psycopg import sql

Source = Literal["environment", "testcontainers", "local-binaries"]
ExecFn = Callable[[list[str]], tuple[int, str]]
Log = Callable[[str], object]

DATABASE_URL_ENV = "CONVEYOR_DATABASE_URL"
AMQP_URL_ENV = "CONVEYOR_AMQP_URL"
PROBE_TIMEOUT_S = 2.0
START_TIMEOUT_S = 60.0
TEMP_PREFIX = "conveyor-devservices-"
_NAME_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


class DevServicesError(RuntimeError):
    """A server could not be found, started, or administered."""


@dataclass(frozen=True)
class Services:
    """Where the servers are and how to administer them.

    ``database_url`` points at a maintenance database as a role with CREATEDB;
    ``amqp_url`` at the default vhost as an administrator. At most one of the vhost
    administration routes is used, in this order: ``management_url`` (HTTP API base,
    ``.../api``), ``rabbitmqctl`` (argv prefix, e.g. ``(path, "-n", node)``, run with
    ``rabbitmqctl_env`` added to the environment), ``container_exec``.
    """

    database_url: str
    amqp_url: str
    source: Source
    management_url: str | None = None
    rabbitmqctl: tuple[str, ...] | None = None
    rabbitmqctl_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    container_exec: ExecFn | None = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        return (
            f"Services(source={self.source!r}, database_url={redact(self.database_url)!r}, "
            f"amqp_url={redact(self.amqp_url)!r}, management_url={self.management_url!r}, "
            f"rabbitmqctl={self.rabbitmqctl!r})"
        )


# --------------------------------------------------------------------------- picking


@contextmanager
def provide_services(
    *, prefer_env: bool = True, use_testcontainers: bool = True, log: Log = print
) -> Iterator[Services]:
    """Yield running servers from the first source that works; stop what was started."""
    skipped: list[str] = []
    if prefer_env:
        services, why = environment_services()
        if services is not None:
            log(_summary(services, why, skipped))
            yield services
            return
        skipped.append(f"environment: {why}")
    else:
        skipped.append("environment: prefer_env=False")

    why_not_docker = _docker_unavailable() if use_testcontainers else "use_testcontainers=False"
    if why_not_docker is None:
        with _testcontainers_services() as (services, detail):
            log(_summary(services, detail, skipped))
            yield services
        return
    skipped.append(f"testcontainers: {why_not_docker}")

    with _local_services() as (services, detail):
        log(_summary(services, detail, skipped))
        yield services


def _summary(services: Services, detail: str, skipped: list[str]) -> str:
    admin = (
        "management API" if services.management_url
        else "rabbitmqctl" if services.rabbitmqctl
        else "docker exec" if services.container_exec
        else "none"
    )
    why = f"; skipped {'; '.join(skipped)}" if skipped else ""
    return f"devservices: using {services.source} ({detail}; vhosts via {admin}){why}"


def environment_services() -> tuple[Services | None, str]:
    """Services from CONVEYOR_DATABASE_URL/CONVEYOR_AMQP_URL if both answer, else why not."""
    db_url, amqp_url = os.environ.get(DATABASE_URL_ENV), os.environ.get(AMQP_URL_ENV)
    missing = [name for name, value in ((DATABASE_URL_ENV, db_url), (AMQP_URL_ENV, amqp_url)) if not value]
    if missing or db_url is None or amqp_url is None:
        return None, f"{' and '.join(missing)} not set"
    problem = _postgres_problem(db_url)
    if problem:
        return None, f"{DATABASE_URL_ENV}={redact(db_url)} {problem}"
    problem = _amqp_problem(amqp_url)
    if problem:
        return None, f"{AMQP_URL_ENV}={redact(amqp_url)} {problem}"
    management = _default_management_url(amqp_url)
    if not _management_answers(management, amqp_url, timeout=1.0):
        management = None
    ctl = _system_rabbitmqctl(amqp_url) if management is None else None
    detail = f"{redact(db_url)}, {redact(amqp_url)} answered"
    return Services(db_url, amqp_url, "environment", management_url=management, rabbitmqctl=ctl), detail


def _postgres_problem(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=int(PROBE_TIMEOUT_S), autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        return f"is not usable ({_first_line(exc)})"
    if not (row and row[0]):
        return "answered, but its role may not CREATE DATABASE"
    return None


def _amqp_problem(url: str) -> str | None:
    try:
        connection = pika.BlockingConnection(_pika_params(url, timeout=PROBE_TIMEOUT_S))
    except Exception as exc:  # pika raises many unrelated types for "no broker"
        return f"is not usable ({type(exc).__name__}: {_first_line(exc)})"
    connection.close()
    return None


def _pika_params(url: str, *, timeout: float) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = timeout
    params.stack_timeout = timeout + 1
    params.blocked_connection_timeout = timeout + 1
    return params


def _docker_unavailable() -> str | None:
    """None if a Docker engine answers, else why not (fast when there is no socket)."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        if not os.path.exists("/var/run/docker.sock"):
            return "no Docker engine (DOCKER_HOST unset, /var/run/docker.sock missing)"
        host = "unix:///var/run/docker.sock"
    try:
        import docker  # testcontainers' own dependency
        import testcontainers  # noqa: F401

        docker.DockerClient(base_url=host, timeout=int(PROBE_TIMEOUT_S)).ping()
    except ImportError:
        return "the docker/testcontainers packages are not installed"
    except Exception as exc:
        return f"Docker engine at {host} did not answer ({type(exc).__name__})"
    return None


# --------------------------------------------------------------------------- databases


def database_name(database_url: str) -> str:
    """The database a postgresql:// URL points at."""
    return unquote(urlsplit(database_url).path.lstrip("/"))


def database_url_for(database_url: str, name: str) -> str:
    """The same server, credentials and query string, another database."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def create_database(services: Services, *, prefix: str = "conveyor_test", template: str | None = None) -> str:
    """CREATE DATABASE with a unique name (cloned from ``template`` if given); return its URL.

    A template must have no open connections: see :func:`seal_template`.
    """
    name = _unique_name(prefix, "_")
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin_connection(services) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.ObjectInUse as exc:
            raise DevServicesError(
                f"cannot clone {template!r}: it has open connections (seal_template() it after migrating)"
            ) from exc
    return database_url_for(services.database_url, name)


def create_database_from_template(services: Services, template: str, *, prefix: str = "conveyor_test") -> str:
    """CREATE DATABASE <unique> TEMPLATE <template>; return its URL (a block copy: ~50-150 ms here)."""
    return create_database(services, prefix=prefix, template=template)


def drop_database(services: Services, database_url_or_name: str) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE): open connections are terminated."""
    name = database_name(database_url_or_name) if "://" in database_url_or_name else database_url_or_name
    with _admin_connection(services) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def seal_template(services: Services, name: str) -> None:
    """Forbid new connections to ``name`` and end the open ones, so it can be cloned."""
    with _admin_connection(services) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@contextmanager
def fresh_database(
    services: Services, *, prefix: str = "conveyor_test", template: str | None = None
) -> Iterator[str]:
    """Yield the URL of a new, uniquely named database; drop it (WITH (FORCE)) afterwards."""
    url = create_database(services, prefix=prefix, template=template)
    try:
        yield url
    finally:
        drop_database(services, url)


def _admin_connection(services: Services) -> psycopg.Connection:
    return psycopg.connect(services.database_url, autocommit=True, connect_timeout=10)


def _unique_name(prefix: str, separator: str) -> str:
    if not _NAME_PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} must match {_NAME_PREFIX.pattern}")
    return f"{prefix}{separator}{secrets.token_hex(6)}"


# --------------------------------------------------------------------------- vhosts


def amqp_url_for_vhost(amqp_url: str, vhost: str) -> str:
    """The same broker, credentials and query string, another (percent-encoded) vhost."""
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def create_vhost(services: Services, *, prefix: str = "conveyor-test") -> str:
    """Create a uniquely named vhost, give the URL's user full rights; return its AMQP URL."""
    name = _unique_name(prefix, "-")
    url = amqp_url_for_vhost(services.amqp_url, name)
    try:
        _vhost_admin(services, "create", name, _amqp_user(services.amqp_url))
        problem = _amqp_problem(url)  # e.g. rabbitmqctl reached another node than the URL's broker
        if problem:
            raise DevServicesError(f"created vhost {name!r}, but {redact(url)} {problem}")
    except BaseException:
        _delete_quietly(services, name)
        raise
    return url


def delete_vhost(services: Services, amqp_url_or_name: str) -> None:
    """Delete a vhost (and everything in it)."""
    name = unquote(urlsplit(amqp_url_or_name).path[1:]) if "://" in amqp_url_or_name else amqp_url_or_name
    _vhost_admin(services, "delete", name, _amqp_user(services.amqp_url))


@contextmanager
def fresh_vhost(services: Services, *, prefix: str = "conveyor-test") -> Iterator[str]:
    """Yield the AMQP URL of a new vhost the URL's user has full rights in; delete it after."""
    url = create_vhost(services, prefix=prefix)
    try:
        yield url
    finally:
        delete_vhost(services, url)


def _delete_quietly(services: Services, name: str) -> None:
    try:
        _vhost_admin(services, "delete", name, _amqp_user(services.amqp_url))
    except Exception:
        pass


def _amqp_user(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).username or "guest")


def _amqp_password(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).password or "guest")


def _vhost_admin(services: Services, action: Literal["create", "delete"], name: str, user: str) -> None:
    if services.management_url:
        _vhost_via_management(services.management_url, services.amqp_url, action, name, user)
    elif services.rabbitmqctl:
        env = {**os.environ, **dict(services.rabbitmqctl_env)} if services.rabbitmqctl_env else None
        for argv in _rabbitmqctl_commands(action, name, user):
            _run_checked([*services.rabbitmqctl, *argv], env=env, what=f"rabbitmqctl {argv[0]}")
    elif services.container_exec:
        for argv in _rabbitmqctl_commands(action, name, user):
            code, output = services.container_exec(["rabbitmqctl", *argv])
            if code != 0:
                raise DevServicesError(f"docker exec rabbitmqctl {argv[0]} failed ({code}): {output.strip()}")
    else:
        raise DevServicesError(
            f"cannot create vhosts on {redact(services.amqp_url)}: no management API answered on "
            f"{_default_management_url(services.amqp_url)} and rabbitmqctl is only used for a local broker "
            "(run the tests as root on the broker's machine, or enable rabbitmq_management)"
        )


def _rabbitmqctl_commands(action: str, name: str, user: str) -> list[list[str]]:
    if action == "create":
        return [["add_vhost", name], ["set_permissions", "-p", name, user, ".*", ".*", ".*"]]
    return [["delete_vhost", name]]


def _vhost_via_management(api: str, amqp_url: str, action: str, name: str, user: str) -> None:
    vhost = f"{api}/vhosts/{quote(name, safe='')}"
    if action == "create":
        _http(api, amqp_url, "PUT", vhost, {})
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        _http(api, amqp_url, "PUT", f"{api}/permissions/{quote(name, safe='')}/{quote(user, safe='')}", permissions)
    else:
        _http(api, amqp_url, "DELETE", vhost, None, missing_ok=True)


def _http(api: str, amqp_url: str, method: str, url: str, body: object, *, missing_ok: bool = False) -> None:
    request = urllib.request.Request(url, method=method, headers=_auth_header(amqp_url))
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30):
            pass
    except urllib.error.HTTPError as exc:
        if not (missing_ok and exc.code == 404):
            raise DevServicesError(f"{method} {url} -> {exc.code} {exc.read()[:300]!r}") from exc


def _auth_header(amqp_url: str) -> dict[str, str]:
    token = b64encode(f"{_amqp_user(amqp_url)}:{_amqp_password(amqp_url)}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def _default_management_url(amqp_url: str) -> str:
    host = urlsplit(amqp_url).hostname or "localhost"
    return f"http://{'[' + host + ']' if ':' in host else host}:15672/api"


def _management_answers(api: str, amqp_url: str, *, timeout: float) -> bool:
    request = urllib.request.Request(f"{api}/whoami", headers=_auth_header(amqp_url))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError, http.client.HTTPException):
        return False


def _system_rabbitmqctl(amqp_url: str) -> tuple[str, ...] | None:
    """The machine's rabbitmqctl (default node), only for a broker on this machine.

    On Debian, root's ``rabbitmqctl`` is a wrapper that runs as the rabbitmq user, so it
    uses that user's Erlang cookie: the machine broker's.
    """
    if (urlsplit(amqp_url).hostname or "") not in _LOOPBACK_HOSTS:
        return None
    path = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin:/usr/local/sbin:/sbin")
    return (path,) if path else None


def _run_checked(argv: list[str], *, env: Mapping[str, str] | None = None, what: str, timeout: float = 60) -> str:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevServicesError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise DevServicesError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


# --------------------------------------------------------------------------- testcontainers


@contextmanager
def _testcontainers_services() -> Iterator[tuple[Services, str]]:
    try:
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # releases before the "community" move
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

    started = time.monotonic()
    with ExitStack() as stack:
        postgres = stack.enter_context(PostgresContainer("postgres:15", driver=None))
        rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:3.10-management").with_exposed_ports(15672))
        host = rabbit.get_container_host_ip()
        amqp_url = (
            f"amqp://{quote(rabbit.username, safe='')}:{quote(rabbit.password, safe='')}"
            f"@{host}:{rabbit.get_exposed_port(rabbit.port)}/%2F"
        )
        api = f"http://{host}:{rabbit.get_exposed_port(15672)}/api"
        management = api if _wait_until(lambda: _management_answers(api, amqp_url, timeout=1), 30) else None

        def container_exec(argv: list[str]) -> tuple[int, str]:
            result = rabbit.exec(argv)
            return int(result.exit_code or 0), result.output.decode(errors="replace")

        services = Services(
            postgres.get_connection_url(), amqp_url, "testcontainers",
            management_url=management, container_exec=container_exec,
        )
        yield services, f"containers ready in {time.monotonic() - started:.1f} s"


# --------------------------------------------------------------------------- local binaries


@contextmanager
def _local_services() -> Iterator[tuple[Services, str]]:
    """Throwaway PostgreSQL + RabbitMQ; RabbitMQ boots while PostgreSQL is set up."""
    _sweep_stale_temp_dirs()
    base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    os.chmod(base, 0o711)  # the unprivileged postgres user must reach its subdirectory
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        started = time.monotonic()
        rabbit_ready = stack.enter_context(_throwaway_rabbitmq(os.path.join(base, "rabbitmq")))
        database_url, pg_detail = stack.enter_context(_throwaway_postgres(os.path.join(base, "postgres")))
        rabbit, rabbit_detail = rabbit_ready()
        detail = f"{pg_detail}; {rabbit_detail}; both ready in {time.monotonic() - started:.1f} s, in {base}"
        yield dataclasses.replace(rabbit, database_url=database_url), detail


def _sweep_stale_temp_dirs() -> None:
    """Delete temp dirs left by devservices processes that no longer exist."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{TEMP_PREFIX}*-*")):
        match = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", os.path.basename(path))
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now, chosen below the kernel's ephemeral range
    so that outgoing connections cannot take them before our servers bind them."""
    low = _ephemeral_port_floor()
    picked: list[int] = []
    candidates = random.SystemRandom().sample(range(20000, low), min(200, low - 20000)) if low > 20200 else []
    for port in candidates:
        if len(picked) == count:
            break
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        picked.append(port)
    while len(picked) < count:  # odd port range: let the kernel choose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in picked:
            picked.append(port)
    return picked


def _ephemeral_port_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_until(predicate: Callable[[], bool], timeout: float, *, alive: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if alive is not None and alive.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """preexec_fn: deliver ``sig`` to the child when this thread dies (Linux; else None).

    prctl is looked up here, in the parent: the child only makes the call. It runs after
    Popen's setuid, which would otherwise clear the setting.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)

    return preexec


def _stop_process(proc: subprocess.Popen, sig: signal.Signals, *, grace: float) -> None:
    """Signal our own child (a session leader), then SIGKILL its process group after ``grace`` s."""
    proc.send_signal(sig)  # a no-op if it has already exited and been reaped
    if proc.returncode is None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _exited(proc):
            time.sleep(0.02)
        # Not reaped yet, so its pid still names only the group it leads (helpers included).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _exited(proc: subprocess.Popen) -> bool:
    """Has the child exited? Leaves it unreaped (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _tail(path: str, lines: int = 15) -> str:
    """The lines of a server log that say what went wrong (else its last lines)."""
    try:
        with open(path, errors="replace") as handle:
            text = handle.readlines()
    except OSError:
        return "(no log)"
    telling = [line for line in text if re.search(r"Error|error in|FATAL|eaddrinuse|already in use|could not", line)]
    return "".join(dict.fromkeys(telling[:lines]) or text[-lines:])


# ---- PostgreSQL


def postgres_bindir() -> str:
    """Directory with initdb/postgres: ``pg_config --bindir``, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout
        candidates.append(out.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True)
    for bindir in candidates:
        if bindir and all(os.access(os.path.join(bindir, exe), os.X_OK) for exe in ("initdb", "postgres")):
            return bindir
    raise DevServicesError("no PostgreSQL server binaries (initdb, postgres) found; install postgresql")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise DevServicesError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@contextmanager
def _throwaway_postgres(workdir: str) -> Iterator[tuple[str, str]]:
    """initdb + postgres on a free port; yield (URL of db 'postgres' as superuser, detail)."""
    started = time.monotonic()
    bindir = postgres_bindir()
    data, env, as_user = _initdb(bindir, workdir)
    initdb_s = time.monotonic() - started

    for attempt in range(3):  # a port picked as free can be taken before postgres binds it
        (port,) = _free_ports(1)
        log_path = os.path.join(workdir, f"postgres-{attempt}.log")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [f"{bindir}/postgres", "-D", data, "-p", str(port), "-k", workdir,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(signal.SIGQUIT), **as_user,  # type: ignore[call-overload]
            )
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        try:
            if _wait_until(lambda: _postgres_ready(url, data), START_TIMEOUT_S, alive=proc):
                version = os.path.basename(os.path.dirname(bindir))
                yield url, (f"PostgreSQL {version} on :{port} ready in {time.monotonic() - started:.1f} s "
                            f"(initdb {initdb_s:.1f} s of it)")
                return
        finally:
            _stop_process(proc, signal.SIGQUIT, grace=10)  # immediate shutdown: the data is discarded
        if "already in use" not in _tail(log_path):
            break
    raise DevServicesError(f"PostgreSQL did not start; its log says:\n{_tail(log_path)}")


def _initdb(bindir: str, workdir: str) -> tuple[str, dict[str, str], dict[str, object]]:
    """Create ``workdir`` and a cluster in ``workdir/data`` (trust auth, superuser ``postgres``);
    returns (data directory, environment, Popen/run keywords that run as the unprivileged user)."""
    user = _unprivileged_user()
    os.mkdir(workdir, 0o700)
    as_user: dict[str, object] = {}
    if user is not None:
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = os.path.join(workdir, "data")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    initdb = [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "-N"]
    done = subprocess.run(initdb, cwd=workdir, env=env, capture_output=True, text=True, **as_user)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise DevServicesError(f"initdb failed: {done.stderr.strip()[-800:]}")
    return data, env, as_user


def _postgres_ready(url: str, data_directory: str) -> bool:
    """Does *our* server answer there (not another one that holds the port)?"""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error:
        return False
    return row is not None and os.path.realpath(row[0]) == os.path.realpath(data_directory)


# ---- RabbitMQ


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
    """Start a RabbitMQ node (with the management API) with its own name, ports, cookie,
    epmd and files in ``workdir``.

    Yields a function that waits until *this* node answers and returns (Services
    without a database URL, detail). The node and its epmd are killed on exit.
    """
    started = time.monotonic()
    bindir = rabbitmq_bindir()
    os.mkdir(workdir, 0o700)
    amqp_port, dist_port, epmd_port, http_port = _free_ports(4)
    node = f"conveyor-{secrets.token_hex(4)}@localhost"
    overrides = _rabbitmq_env(workdir, node=node, amqp_port=amqp_port, dist_port=dist_port, epmd_port=epmd_port)
    _write_rabbitmq_files(workdir, amqp_port=amqp_port, http_port=http_port)
    plugins_dir = _minimal_plugins_dir(bindir, os.path.join(workdir, "plugins"), ["rabbit", "rabbitmq_management"])
    if plugins_dir:
        overrides["RABBITMQ_PLUGINS_DIR"] = plugins_dir
    env = {**_without_rabbitmq_settings(os.environ), **overrides}

    with ExitStack() as stack:
        # Our own epmd on a private port: nothing shared with the machine's broker, and
        # nothing left running when we are done (a node would otherwise daemonise one).
        epmd = subprocess.Popen(
            [_epmd_path(), "-port", str(epmd_port), "-address", "127.0.0.1"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
        )
        stack.callback(_stop_process, epmd, signal.SIGTERM, grace=2)
        if not (_wait_until(lambda: _port_open(epmd_port), 10, alive=epmd) and _still_running(epmd)):
            raise DevServicesError(f"epmd did not start on port {epmd_port}")

        log_path = os.path.join(workdir, "server.out")
        with open(log_path, "wb") as log_file:
            server = subprocess.Popen(
                [os.path.join(bindir, "rabbitmq-server")], cwd=workdir, env=env,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
            )
        # SIGKILL, not `rabbitmqctl stop`: the node's data is thrown away, and a graceful
        # stop with the management plugin takes ~5.5 s (it waits on its stats collector).
        stack.callback(_stop_process, server, signal.SIGKILL, grace=5)

        amqp_url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/%2F"
        api = f"http://127.0.0.1:{http_port}/api"

        def ready() -> tuple[Services, str]:
            def answers() -> bool:  # our node, not whatever else may hold one of "our" ports
                return _is_our_node(api, amqp_url, node, amqp_port) and _amqp_problem(amqp_url) is None

            if not _wait_until(answers, START_TIMEOUT_S, alive=server):
                raise DevServicesError(f"RabbitMQ node {node} did not start; its log says:\n{_tail(log_path)}")
            services = Services(
                "", amqp_url, "local-binaries", management_url=api,
                rabbitmqctl=(os.path.join(bindir, "rabbitmqctl"), "-n", node),
                rabbitmqctl_env=tuple(sorted(overrides.items())),
            )
            return services, f"RabbitMQ node {node} on :{amqp_port} ready in {time.monotonic() - started:.1f} s"

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


def _still_running(proc: subprocess.Popen, settle: float = 0.05) -> bool:
    time.sleep(settle)  # a server that lost the race for its port exits at once
    return proc.poll() is None


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


def _write_rabbitmq_files(workdir: str, *, amqp_port: int, http_port: int) -> None:
    cookie = os.path.join(workdir, ".erlang.cookie")
    with open(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "w") as handle:
        handle.write(secrets.token_hex(16).upper())
    open(os.path.join(workdir, "rabbitmq-env.conf"), "w").close()
    with open(os.path.join(workdir, "enabled_plugins"), "w") as handle:
        handle.write("[rabbitmq_management].\n")  # +~0.4 s at boot; a vhost then costs ~40 ms, not ~1.3 s
    config = [
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}",
        f"management.tcp.port = {http_port}",
        "management.tcp.ip = 127.0.0.1",
        "log.console = true",
        "log.file.level = warning",
    ]
    with open(os.path.join(workdir, "rabbitmq.conf"), "w") as handle:
        handle.write("\n".join(config) + "\n")


# --------------------------------------------------------------------------- helpers


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# --------------------------------------------------------------------------- a broker to restart


class RestartableRabbitMQ:
    """A RabbitMQ node of our own, for tests that crash and restart the broker; never the
    machine's. ``with RestartableRabbitMQ() as broker:`` starts it; ``broker.stop()`` stops
    it as a restart would, ``broker.kill()`` crashes it (SIGKILL; what was declared in the
    last moments may be lost), ``broker.start()`` boots it again on the same port with the
    same data (durable queues and persistent messages survive); leaving the block deletes it.
    ``amqp_url`` is its default vhost as ``guest``.
    """

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._server: subprocess.Popen | None = None
        self.workdir = ""
        self.amqp_url = ""

    def __enter__(self) -> "RestartableRabbitMQ":
        _sweep_stale_temp_dirs()
        base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
        self._stack.callback(shutil.rmtree, base, ignore_errors=True)
        self.workdir = os.path.join(base, "rabbitmq")
        os.mkdir(self.workdir, 0o700)
        self._bindir = rabbitmq_bindir()
        self.amqp_port, dist_port, epmd_port = _free_ports(3)
        self.node = node = f"conveyor-{secrets.token_hex(4)}@localhost"
        overrides = _rabbitmq_env(self.workdir, node=node, amqp_port=self.amqp_port, dist_port=dist_port,
                                  epmd_port=epmd_port)
        plugins_dir = _minimal_plugins_dir(self._bindir, os.path.join(self.workdir, "plugins"), ["rabbit"])
        if plugins_dir:
            overrides["RABBITMQ_PLUGINS_DIR"] = plugins_dir
        self._env = {**_without_rabbitmq_settings(os.environ), **overrides}
        self._write_files()
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"
        try:
            epmd = subprocess.Popen(
                [_epmd_path(), "-port", str(epmd_port), "-address", "127.0.0.1"],
                env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
            )
            self._stack.callback(_stop_process, epmd, signal.SIGTERM, grace=2)
            if not _wait_until(lambda: _port_open(epmd_port), 10, alive=epmd):
                raise DevServicesError(f"epmd did not start on port {epmd_port}")
            self._stack.callback(self.kill)
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _write_files(self) -> None:
        """Cookie, empty env file, no plugins, AMQP on loopback only."""
        cookie = os.path.join(self.workdir, ".erlang.cookie")
        with open(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "w") as handle:
            handle.write(secrets.token_hex(16).upper())
        open(os.path.join(self.workdir, "rabbitmq-env.conf"), "w").close()
        with open(os.path.join(self.workdir, "enabled_plugins"), "w") as handle:
            handle.write("[].\n")
        with open(os.path.join(self.workdir, "rabbitmq.conf"), "w") as handle:
            handle.write(f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\nlog.console = true\n")

    def start(self, *, timeout: float = START_TIMEOUT_S) -> None:
        """Boot the node (again) and wait until it accepts AMQP connections."""
        log_path = os.path.join(self.workdir, "server.out")
        with open(log_path, "ab") as log_file:
            self._server = subprocess.Popen(
                [os.path.join(self._bindir, "rabbitmq-server")], cwd=self.workdir, env=self._env,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
            )
        ready = lambda: _port_open(self.amqp_port) and _amqp_problem(self.amqp_url) is None  # noqa: E731
        if not _wait_until(ready, timeout, alive=self._server):
            raise DevServicesError(f"RabbitMQ did not start; its log says:\n{_tail(log_path)}")

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
        argv = [os.path.join(self._bindir, "rabbitmqctl"), "-n", self.node, *args]
        return _run_checked(argv, env=self._env, what=f"rabbitmqctl {' '.join(args[:1])}", timeout=timeout)


# --------------------------------------------------------------------------- a database to restart


class RestartablePostgres:
    """A PostgreSQL server of our own, for tests that crash and restart the database; never
    the machine's. ``with RestartablePostgres() as pg:`` runs initdb and starts it;
    ``pg.stop()`` stops it the way a crash does (``pg_ctl stop -m immediate``: no shutdown
    checkpoint, crash recovery from the WAL at the next start), ``pg.start()`` boots it
    again on the same port with the same data; leaving the block deletes it.
    ``database_url`` is database ``postgres`` as the superuser ``postgres``.

    Unlike the throwaway server, ``synchronous_commit`` stays on, so a commit the server
    acknowledged survives ``stop()``; only ``fsync`` is off, because the machine itself
    does not crash in these tests (the kernel still has every write).
    """

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._server: subprocess.Popen | None = None
        self.workdir = ""
        self.data_directory = ""
        self.database_url = ""
        self.port = 0

    def __enter__(self) -> "RestartablePostgres":
        _sweep_stale_temp_dirs()
        base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
        os.chmod(base, 0o711)  # the unprivileged postgres user must reach its subdirectory
        self._stack.callback(shutil.rmtree, base, ignore_errors=True)
        self.workdir = os.path.join(base, "postgres")
        try:
            self._bindir = postgres_bindir()
            self.data_directory, self._env, self._as_user = _initdb(self._bindir, self.workdir)
            self._stack.callback(self._quit)
            for _attempt in range(3):  # a port picked as free can be taken before postgres binds it
                (self.port,) = _free_ports(1)
                self.database_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
                try:
                    self.start()
                    break
                except DevServicesError as exc:
                    if "already in use" not in str(exc):
                        raise
            else:
                raise DevServicesError("PostgreSQL found no free port in 3 attempts")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def start(self, *, timeout: float = START_TIMEOUT_S) -> None:
        """Boot the server (again, recovering from its WAL) and wait until it answers."""
        log_path = os.path.join(self.workdir, "postgres.log")
        with open(log_path, "ab") as log_file:
            self._server = subprocess.Popen(
                [f"{self._bindir}/postgres", "-D", self.data_directory, "-p", str(self.port), "-k", self.workdir,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"],
                cwd=self.workdir, env=self._env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGQUIT), **self._as_user,  # type: ignore[call-overload]
            )
        if not _wait_until(lambda: _postgres_ready(self.database_url, self.data_directory), timeout,
                           alive=self._server):
            server, self._server = self._server, None
            _stop_process(server, signal.SIGQUIT, grace=5)
            raise DevServicesError(f"PostgreSQL did not start; its log says:\n{_tail(log_path)}")

    def stop(self, *, mode: Literal["immediate", "fast", "smart"] = "immediate") -> None:
        """``pg_ctl stop -m MODE`` (as the server's user), then reap the server."""
        if self._server is None:
            return
        pg_ctl = os.path.join(self._bindir, "pg_ctl")
        if os.access(pg_ctl, os.X_OK):
            subprocess.run([pg_ctl, "-D", self.data_directory, "-m", mode, "-w", "-t", "30", "stop"],
                           cwd=self.workdir, env=self._env, capture_output=True, timeout=40,
                           **self._as_user)  # type: ignore[call-overload]
        signals = {"immediate": signal.SIGQUIT, "fast": signal.SIGINT, "smart": signal.SIGTERM}
        _stop_process(self._server, signals[mode], grace=30)  # a no-op once pg_ctl has stopped it
        self._server = None

    def _quit(self) -> None:
        if self._server is not None:
            _stop_process(self._server, signal.SIGQUIT, grace=10)  # the data is discarded
            self._server = None
