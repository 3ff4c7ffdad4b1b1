"""Isolation on RabbitMQ: a fresh, uniquely named vhost per user, through the management API,
rabbitmqctl or the container, deleted afterwards."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from conveyor.devservices.base import _LOOPBACK_HOSTS, DevServicesError, Services, redact
from conveyor.devservices.databases import _unique_name
from conveyor.devservices.probes import _amqp_problem
from conveyor.devservices.processes import _run_checked


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
    """The machine's rabbitmqctl (default node), only for a broker on this machine's default port
    (a throwaway node on another port is not the default node: its vhosts need its own API).

    On Debian, root's ``rabbitmqctl`` is a wrapper that runs as the rabbitmq user, so it
    uses that user's Erlang cookie: the machine broker's.
    """
    parts = urlsplit(amqp_url)
    if (parts.hostname or "") not in _LOOPBACK_HOSTS:
        return None
    if (parts.port or 5672) != 5672:  # another node on this machine: the default node is not it
        return None
    path = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin:/usr/local/sbin:/sbin")
    return (path,) if path else None
