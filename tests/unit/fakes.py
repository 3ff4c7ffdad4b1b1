"""The in-memory unit of work lives in the kit (``conveyor.workers.kit.fakes``), so shops and
partners can run Conveyor's handlers in their own tests; the handler tests import it from here."""

from __future__ import annotations

from conveyor.workers.kit.fakes import (
    FakeFulfilment,
    FakeInbox,
    FakeIntake,
    FakeOrderStates,
    FakeOutbox,
    FakeReservations,
    FakeUnitOfWork,
    Reservation,
    StoredOrder,
    World,
)

__all__ = ["FakeFulfilment", "FakeInbox", "FakeIntake", "FakeOrderStates", "FakeOutbox", "FakeReservations",
           "FakeUnitOfWork", "Reservation", "StoredOrder", "World"]
