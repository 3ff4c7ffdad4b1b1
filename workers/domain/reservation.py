"""The reservation decision: given an order's lines and the stock it saw under lock,
reserve every line or none. Pure: no I/O, unit-tested with plain values."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from conveyor.db.stock import StockLevel

RejectionReason = Literal["unknown_sku", "insufficient_stock"]


@dataclass(frozen=True)
class LineRequest:
    line_no: int
    sku: str
    quantity: int


@dataclass(frozen=True)
class LineRejection:
    line_no: int
    sku: str
    requested: int
    available: int
    reason: RejectionReason


@dataclass(frozen=True)
class ReservationDecision:
    quantities: dict[str, int]          # per SKU, what to reserve when accepted
    rejections: list[LineRejection]     # empty when accepted

    @property
    def accepted(self) -> bool:
        return not self.rejections


def quantities_per_sku(lines: list[LineRequest]) -> dict[str, int]:
    """A SKU listed on several lines is reserved once, for the sum of its quantities."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.sku] += line.quantity
    return dict(totals)


def decide(lines: list[LineRequest], stock: dict[str, StockLevel]) -> ReservationDecision:
    quantities = quantities_per_sku(lines)
    rejections = [
        rejection for line in lines
        if (rejection := _reject_line(line, quantities[line.sku], stock.get(line.sku))) is not None
    ]
    return ReservationDecision(quantities, rejections)


def _reject_line(line: LineRequest, sku_total: int, level: StockLevel | None) -> LineRejection | None:
    if level is None:
        return LineRejection(line.line_no, line.sku, line.quantity, 0, "unknown_sku")
    if level.available < sku_total:
        return LineRejection(line.line_no, line.sku, line.quantity, max(level.available, 0),
                             "insufficient_stock")
    return None
