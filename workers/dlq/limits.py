"""Which delivery limit RabbitMQ applies to a DLQ, worked out before a look holds anything.

A look hands every message back, and a quorum queue counts each return towards its delivery
limit; past the limit a DLQ (nothing to dead-letter to) drops the message. So the console
refuses to look when a finite limit applies, unless the operator accepts it, and then stops
before a look would leave a message fewer than ``SPARE_LOOKS`` returns from the limit.

How RabbitMQ resolves the limit (rabbit_quorum_queue ``resolve_delivery_limit`` and its unit
tests in 4.x): among the queue argument ``x-delivery-limit``, the policy's and the operator
policy's ``delivery-limit``, a non-negative value wins, the smallest of them; only negative
values lift the limit; none at all is the default, 20 since 4.0. 3.x has no default, and a
negative value acts as 0 (measured on 3.10.8: -1 drops a message at its first return).

The queue's arguments are known from the re-declaration check (``reader``); policies only
through the management HTTP API (``CONVEYOR_MANAGEMENT_URL``), which also reports, on 4.x,
the limit the queue actually runs with (``delivery_limit``). Without the API a policy is not
visible: ``DeliveryLimit.policies_checked`` says so.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.workers.runtime.topology import has_default_delivery_limit

DEFAULT_LIMIT_SINCE_4 = 20   # RabbitMQ 4.0+: a quorum queue without argument or policy
SPARE_LOOKS = 5              # with an accepted finite limit: stop while this many returns are left
HTTP_TIMEOUT_S = 5.0
ARGUMENT, POLICY, OPERATOR_POLICY, REPORTED = "argument", "policy", "operator policy", "reported"


class ManagementUnavailable(Exception):
    """CONVEYOR_MANAGEMENT_URL is set but the API did not say what applies to the DLQ."""


@dataclass(frozen=True)
class Source:
    """One place a delivery limit can come from: the argument, a policy (by name) or the broker's report."""

    kind: str
    value: int
    name: str = ""

    def describe(self) -> str:
        where = {ARGUMENT: "queue argument x-delivery-limit", POLICY: f"policy {self.name!r}",
                 OPERATOR_POLICY: f"operator policy {self.name!r}",
                 REPORTED: "the broker's report (management API)"}[self.kind]
        return f"{where} = {self.value}"


@dataclass(frozen=True)
class Policies:
    """What the management API says about the DLQ (besides its arguments)."""

    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class DeliveryLimit:
    """The effective limit (None: none applies), why, and what could be seen to decide it."""

    limit: int | None
    reason: str
    version: tuple[int, ...] | None
    policies_checked: bool

    def as_json(self) -> dict:
        return {"limit": self.limit, "reason": self.reason, "policies_checked": self.policies_checked,
                "broker_version": ".".join(map(str, self.version)) if self.version else None}


def effective_limit(version: tuple[int, ...] | None, sources: tuple[Source, ...]) -> tuple[int | None, str]:
    """RabbitMQ's resolution (module docstring); an unknown version is read the strict way."""
    if not sources:
        if has_default_delivery_limit(version) or version is None:
            return DEFAULT_LIMIT_SINCE_4, "RabbitMQ 4.x default (no x-delivery-limit argument or policy)"
        return None, "RabbitMQ 3.x has no default delivery limit, and no argument or policy sets one"
    if has_default_delivery_limit(version):
        finite = [s for s in sources if s.value >= 0]
    else:  # 3.x (or unknown): a negative value acts as 0
        finite = [Source(s.kind, max(s.value, 0), s.name) for s in sources]
    if not finite:
        return None, "lifted: " + ", ".join(s.describe() for s in sources)
    strictest = min(finite, key=lambda s: s.value)
    return strictest.value, strictest.describe()


def assess(version: tuple[int, ...] | None, argument: int | None, policies: Policies | None) -> DeliveryLimit:
    """The limit from the declared argument and, when the API was asked, the policies."""
    sources = [] if argument is None else [Source(ARGUMENT, argument)]
    if policies is not None:
        sources += policies.sources
    limit, reason = effective_limit(version, tuple(sources))
    return DeliveryLimit(limit, reason, version, policies_checked=policies is not None)


def refusal(dlq: str, found: DeliveryLimit) -> str:
    """Why the console will not look, and what the operator can change."""
    return (f"a delivery limit of {found.limit} applies to {dlq!r} ({found.reason}): every look returns the "
            f"messages and counts towards it, and past it the broker drops them. {_fix(found)} "
            "Or pass --accept-delivery-limit to look anyway (it stops while "
            f"{SPARE_LOOKS} returns are left). See docs/dlq.md, 'Looking never wears a message down'.")


def _fix(found: DeliveryLimit) -> str:
    if found.reason.startswith("RabbitMQ 4.x default"):
        return ("The DLQ was declared before RabbitMQ 4 (without x-delivery-limit -1): recreate it "
                "(conveyor dlq export, delete the queue, conveyor topology declare, conveyor dlq import).")
    if "polic" in found.reason:
        return "Remove delivery-limit from that policy (or make the policy not match the DLQ)."
    return "Recreate the DLQ as Conveyor declares it (export, delete, topology declare, import)."


def returns_left(limit: int, headers: Mapping | None) -> int:
    """How many more returns the message survives after this look hands it back."""
    headers = headers or {}
    counted = max(_int(headers.get("x-delivery-count")), _int(headers.get("x-acquired-count")))
    return limit - counted - 1


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# -- the management API ------------------------------------------------------------------------

def fetch_policies(management_url: str, amqp_url: str, queue: str) -> Policies:
    """The DLQ's policy, operator policy and (4.x) reported limit, from the management API."""
    vhost = _vhost(amqp_url)
    info = _get(management_url, amqp_url, f"queues/{_q(vhost)}/{_q(queue)}")
    sources = [*_policy_source(management_url, amqp_url, vhost, POLICY, info.get("policy")),
               *_policy_source(management_url, amqp_url, vhost, OPERATOR_POLICY, info.get("operator_policy")),
               *_reported(info.get("delivery_limit"))]
    return Policies(tuple(sources))


def _policy_source(api: str, amqp_url: str, vhost: str, kind: str, name: object) -> list[Source]:
    if not isinstance(name, str) or not name:
        return []
    path = "policies" if kind == POLICY else "operator-policies"
    value = (_get(api, amqp_url, f"{path}/{_q(vhost)}/{_q(name)}").get("definition") or {}).get("delivery-limit")
    return [Source(kind, value, name)] if isinstance(value, int) else []


def _reported(value: object) -> list[Source]:
    """4.x reports the limit the queue runs with: an integer, or "unlimited"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [Source(REPORTED, value)]
    return [Source(REPORTED, -1)] if value == "unlimited" else []


def _get(api: str, amqp_url: str, path: str) -> dict:
    base = api.rstrip("/").removesuffix("/api") + "/api"
    request = urllib.request.Request(f"{base}/{path}", headers={"authorization": _basic_auth(amqp_url)})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            document = json.load(response)
    except urllib.error.HTTPError as error:
        raise ManagementUnavailable(f"GET {base}/{path}: HTTP {error.code}") from None
    except (OSError, ValueError) as error:
        raise ManagementUnavailable(f"no answer from the management API at {base} ({error})") from None
    return document if isinstance(document, dict) else {}


def _basic_auth(amqp_url: str) -> str:
    parts = urllib.parse.urlsplit(amqp_url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _vhost(amqp_url: str) -> str:
    path = urllib.parse.urlsplit(amqp_url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")
