"""``InMemoryConveyor``: Conveyor's real parser and handlers in a shop's or partner's unit tests.

No broker, no database: each ``send`` runs the worker's parser (``contract.check``) and then
the type's real handler against the in-memory unit of work (``fakes.py``), in a transaction of
its own (a handler that raises leaves nothing behind, as a rollback would). What the worker
would publish (``order.reserved`` ...) is in ``events()``, the stock in ``stock()``.

    conveyor = InMemoryConveyor()
    conveyor.set_stock("SKU-1", 5)
    outcome = conveyor.send("order.created", order)
    assert outcome.outcome == "reserved" and conveyor.events("order.reserved")

What it leaves out: batching, retries through the broker, tenant fairness, the relay's
delivery of the events, personal-data sealing. Use the ``conveyor_service`` pytest fixture
(``pytest_plugin.py``) for those.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from conveyor.db.uow import UnitOfWork
from conveyor.workers.config import Settings, load_settings
from conveyor.workers.kit.contract import check
from conveyor.workers.kit.fakes import FakeUnitOfWork, World
from conveyor.workers.kit.publisher import Document, encode

DEAD_LETTERED, RETRY_LATER, DUPLICATE = "dead_lettered", "retry_later", "duplicate_message"


@dataclass(frozen=True)
class Outcome:
    """What became of one message: the handler's outcome label (``reserved``, ``rejected``,
    ``paid`` ...), ``duplicate_message``, or ``dead_lettered``/``retry_later`` with the code
    and reason a worker would record; ``events`` are the ones this message published."""

    outcome: str
    message_id: str
    error_code: str | None = None
    reason: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.outcome not in (DEAD_LETTERED, RETRY_LATER)


class InMemoryConveyor:
    def __init__(self, *, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.world = World()
        self._uow = FakeUnitOfWork(self.world)

    def set_stock(self, sku: str, on_hand: int, *, tenant: str | None = None) -> None:
        level = self.world.stock.setdefault((tenant or self.settings.default_tenant, sku), [0, 0])
        if on_hand < level[1]:
            raise ValueError(f"{sku}: on hand {on_hand} would be below the {level[1]} reserved")
        level[0] = on_hand

    def stock(self, sku: str, *, tenant: str | None = None) -> dict[str, int]:
        on_hand, reserved = self.world.stock.get((tenant or self.settings.default_tenant, sku), [0, 0])
        return {"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved}

    def events(self, routing_key: str | None = None) -> list[dict[str, Any]]:
        """What the worker would publish: ``exchange``, ``routing_key``, ``payload`` ..."""
        return self.world.events(routing_key)

    def order_status(self, order_id: uuid.UUID | str) -> str | None:
        stored = self.world.orders.get(uuid.UUID(str(order_id)))
        return stored.status if stored else None

    def send(self, message_type: str, document: Document, *, message_id: str | None = None) -> Outcome:
        """Deliver one message as the worker would; ``ValueError`` for a type Conveyor does not consume."""
        from conveyor.workers.bootstrap import WORKERS
        from conveyor.workers.runtime.failure import ErrorKind, classify, error_code
        from conveyor.workers.runtime.spec import HandlerContext

        message_id = str(uuid.uuid4()) if message_id is None else message_id
        verdict = check(message_type, encode(document), message_id=message_id, settings=self.settings)
        if not verdict.accepted:
            return Outcome(DEAD_LETTERED, message_id, verdict.error_code, verdict.reason)
        worker = next(w for w in WORKERS.values() if message_type in w.routes)
        before, published = copy.deepcopy(self.world), len(self.world.outbox)
        if not self._uow.inbox.claim(message_id, handler=worker.name):
            return Outcome(DUPLICATE, message_id)
        context = HandlerContext(message_id=message_id, routing_key=message_type, attempt=1,
                                 default_tenant=self.settings.default_tenant)
        uow: UnitOfWork = self._uow  # mypy checks the fake against the protocol here
        try:
            label = worker.routes[message_type].handler(verdict.message, uow, context)
        except Exception as error:  # noqa: BLE001 - the worker's decision, below
            self._roll_back(before)
            kind = classify(error)
            outcome = RETRY_LATER if kind in (ErrorKind.TRANSIENT, ErrorKind.UNEXPECTED) else DEAD_LETTERED
            return Outcome(outcome, message_id, error_code(error), str(error)[:1000])
        return Outcome(label, message_id, events=self.world.outbox[published:])

    def _roll_back(self, before: World) -> None:
        """Everything as it was before the message, its inbox claim included (the repositories
        keep their reference to ``self.world``, so its fields are put back, not the object)."""
        for name in vars(before):
            setattr(self.world, name, getattr(before, name))
