"""The relay's lease (table ``relay_lease``, V003): which relay may publish the outbox.

Why a lease row and not an advisory lock: a session-level advisory lock does not survive
PgBouncer's transaction pooling and outlives a ROLLBACK, and a transaction-level one is
released between batches, so "who is active" would change batch by batch. The lease row
gives a stable holder (for ``relay status`` and a quiet standby), and its *row lock*,
taken by the conditional UPDATE that opens every publishing transaction and held until
it commits, is the fence: a standby's SKIP LOCKED attempt sees nothing while a batch is
in flight, even one that outlives the lease. A dead holder's transaction is rolled back
by PostgreSQL (connection closed, or ``idle_in_transaction_session_timeout``), and its
lease runs out ``ttl`` seconds after its last renewal.
"""

from __future__ import annotations

import psycopg

LEASE = "outbox"

# The publisher stops publishing a batch well before this fires, so a relay whose database
# connection silently died cannot still be publishing once its row locks are released.
FENCE = "SELECT set_config('idle_in_transaction_session_timeout', %(timeout)s, true)"
ACQUIRE = """
UPDATE relay_lease l
SET holder = %(holder)s,
    acquired_at = CASE WHEN l.holder IS DISTINCT FROM %(holder)s THEN now() ELSE l.acquired_at END,
    renewed_at = now(),
    expires_at = now() + make_interval(secs => %(ttl)s)
FROM (SELECT name FROM relay_lease
      WHERE name = %(name)s AND (holder IS NULL OR holder = %(holder)s OR expires_at < now())
      FOR UPDATE SKIP LOCKED) free
WHERE l.name = free.name
RETURNING l.acquired_at
"""
# clock_timestamp(): a long batch must not shorten the lease it leaves behind.
FINISH = """
UPDATE relay_lease
SET renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl)s),
    last_sent_at = CASE WHEN %(sent)s > 0 THEN clock_timestamp() ELSE last_sent_at END,
    sent_total = sent_total + %(sent)s
WHERE name = %(name)s AND holder = %(holder)s
"""
RELEASE = """
UPDATE relay_lease SET holder = NULL, expires_at = NULL, renewed_at = now()
WHERE name = %(name)s AND holder = %(holder)s
"""
# Who holds the lease (``conveyor relay status``) is read in ``conveyor.db.views``.


class RelayLease:
    def __init__(self, conn: psycopg.Connection, *, holder: str, ttl_seconds: float,
                 idle_timeout_ms: int, name: str = LEASE) -> None:
        self._conn = conn
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.idle_timeout_ms = idle_timeout_ms
        self.name = name

    def acquire(self) -> bool:
        """Take or renew the lease for the current transaction; False: another relay has it."""
        self._conn.execute(FENCE, {"timeout": str(self.idle_timeout_ms)})
        row = self._conn.execute(ACQUIRE, {"holder": self.holder, "ttl": self.ttl_seconds,
                                           "name": self.name}).fetchone()
        return row is not None

    def finish(self, *, sent: int) -> None:
        self._conn.execute(FINISH, {"holder": self.holder, "ttl": self.ttl_seconds,
                                    "name": self.name, "sent": sent})

    def release(self) -> None:
        self._conn.execute(RELEASE, {"name": self.name, "holder": self.holder})
