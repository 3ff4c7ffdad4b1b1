"""Tenant fairness: a per-tenant rate limit on new orders, shared by the group (pure logic).

``CONVEYOR_TENANT_RATE_LIMITS`` (``shop-a=200,*=1000``: orders/s per tenant across every
process consuming the queue; empty: no limit). Each process admits its share of a tenant's
rate (the limit divided by the consumers the queue has, as the broker reports them: RabbitMQ
spreads deliveries round-robin over consumers), with the generic cell rate algorithm (GCRA):
a tenant may run one second's worth ahead of its rate, and a message past that is
**deferred** rather than processed now. A deferred message is given the next free slot of its
tenant's schedule (so a flood waits in line, each message deferred about once) and goes to a
delay queue; it comes back at its slot and is admitted then without being charged again.
Deferral spends no attempt and never dead-letters: a flooding tenant only waits, and the
other tenants' messages, which pass the check, keep flowing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

# Delay queues for deferred messages (seconds): a message waits in the smallest at least its
# delay (a longer delay comes back early and is deferred again for the rest, uncharged).
DEFER_TIERS = (1, 2, 5, 10, 30, 60)
BURST_SECONDS = 1.0  # how far ahead of its rate a tenant may run
_ENTRY = re.compile(r"^\s*([A-Za-z0-9_.*-]{1,64})\s*=\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class RateLimits:
    """Orders/s per tenant; ``default`` (the ``*`` entry) for tenants not named."""

    per_tenant: dict[str, float]
    default: float | None = None

    def rate_for(self, tenant: str) -> float | None:
        return self.per_tenant.get(tenant, self.default)

    @property
    def empty(self) -> bool:
        return not self.per_tenant and self.default is None


def parse_limits(text: str) -> RateLimits:
    """``shop-a=200,*=1000`` → limits; raises ValueError naming the bad entry."""
    limits: dict[str, float] = {}
    default: float | None = None
    for entry in filter(str.strip, text.split(",")):
        match = _ENTRY.match(entry)
        if not match:
            raise ValueError(f"bad entry {entry.strip()!r}: expected TENANT=ORDERS_PER_SECOND, e.g. shop-a=200,*=1000")
        tenant, rate = match[1], float(match[2])
        if rate <= 0:
            raise ValueError(f"bad entry {entry.strip()!r}: the rate must be above 0")
        if tenant in limits or (tenant == "*" and default is not None):
            raise ValueError(f"tenant {tenant!r} is named twice")
        if tenant == "*":
            default = rate
        else:
            limits[tenant] = rate
    return RateLimits(limits, default)


def defer_tier(delay: float) -> int:
    """The delay queue a message deferred by ``delay`` seconds waits in."""
    return next((tier for tier in DEFER_TIERS if tier >= delay), DEFER_TIERS[-1])


class TenantThrottle:
    def __init__(self, limits: RateLimits, *, share: Callable[[], int] = lambda: 1,
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.share = share  # how many processes split each tenant's rate
        self.clock = clock  # wall clock: a deferred message's slot travels to other processes
        self._tat: dict[str, float] = {}  # each tenant's theoretical arrival time

    def admit(self, tenant: str, *, slot: float | None = None) -> float:
        """0 when the message may run now; else the absolute time (``clock``) of the slot it
        was given. ``slot``: the one it was given when deferred before (not charged again)."""
        now = self.clock()
        if slot is not None:
            return 0.0 if slot <= now + 0.05 else slot
        rate = self.limits.rate_for(tenant)
        if rate is None:
            return 0.0
        interval = max(self.share(), 1) / rate
        tat = max(self._tat.get(tenant, now), now)
        self._tat[tenant] = tat + interval
        allowed_at = tat - BURST_SECONDS
        return 0.0 if allowed_at <= now + 1e-9 else allowed_at  # (sums of intervals round)
