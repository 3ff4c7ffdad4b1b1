"""Bounded inbound queues: a RabbitMQ policy, so the bound changes without redeclaring queues.

``CONVEYOR_QUEUE_MAX_LENGTH`` messages per inbound work queue; past it the broker refuses
new publishes (``reject-publish``): a publisher using confirms gets a nack and can slow down
or try later, instead of the broker filling its memory and disk. (The queues' own arguments
already say ``x-overflow: reject-publish``, which at-least-once dead-lettering needs; the
policy adds the length.) Policies are set through the management HTTP API: AMQP cannot.
Only one policy applies to a queue (the highest priority): this one is priority 10, and
names only Conveyor's inbound queues.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

NAME = "conveyor-inbound-bound"
PRIORITY = 10


@dataclass(frozen=True)
class Policy:
    name: str
    pattern: str
    definition: dict
    priority: int = PRIORITY
    apply_to: str = "queues"

    def body(self) -> dict:
        return {"pattern": self.pattern, "definition": self.definition, "priority": self.priority,
                "apply-to": self.apply_to}


class PolicyError(Exception):
    """The policy could not be applied; the message says why and what to run instead."""


def inbound_bound(queues: Iterable[str], *, max_length: int) -> Policy:
    """The policy bounding exactly these work queues (not their retry tiers or DLQs)."""
    names = sorted(set(queues))
    pattern = "^(" + "|".join(re.escape(name) for name in names) + ")$"
    return Policy(NAME, pattern, {"max-length": max_length, "overflow": "reject-publish"})


def management_url_for(amqp_url: str) -> str:
    """The management API beside the AMQP broker: same host, port 15672 (https for amqps)."""
    parts = urllib.parse.urlsplit(amqp_url)
    scheme = "https" if parts.scheme == "amqps" else "http"
    return f"{scheme}://{parts.hostname}:15672"


def apply(policy: Policy, *, amqp_url: str, management_url: str | None, timeout: float = 10.0) -> str:
    """PUT the policy into the AMQP URL's vhost with its credentials; returns the API's URL."""
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    api = (management_url or management_url_for(amqp_url)).rstrip("/").removesuffix("/api")
    target = f"{api}/api/policies/{urllib.parse.quote(vhost, safe='')}/{policy.name}"
    credentials = f"{urllib.parse.unquote(parts.username or 'guest')}:{urllib.parse.unquote(parts.password or 'guest')}"
    request = urllib.request.Request(target, data=json.dumps(policy.body()).encode(), method="PUT", headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return api
    except urllib.error.HTTPError as error:
        raise PolicyError(f"the management API at {api} refused the policy: HTTP {error.code}"
                          f" {error.read()[:200].decode(errors='replace')}") from None
    except OSError as error:
        raise PolicyError(f"no management API answered at {api} ({error}); set CONVEYOR_MANAGEMENT_URL, or on the "
                          f"broker's host run: {rabbitmqctl_command(policy, vhost)}") from None


def rabbitmqctl_command(policy: Policy, vhost: str) -> str:
    """The same policy as a rabbitmqctl command line, for a broker without the management API."""
    definition = json.dumps(policy.definition, separators=(",", ":"))
    return (f"rabbitmqctl set_policy -p '{vhost}' --priority {policy.priority} --apply-to {policy.apply_to} "
            f"{policy.name} '{policy.pattern}' '{definition}'")
