"""The bad-input corpus (issue 7): hostile and malformed messages for every message type
Conveyor consumes, each with the disposition it must get. See ``corpus.cases``."""

from tests.corpus.cases import (
                          CASES,
                          CONTROLS,
                          EXCHANGES,
                          INJECTION_PAYLOADS,
                          MAX_BYTES,
                          QUEUES,
                          Case,
                          Dead,
                          Done,
                          NoOp,
                          Unroutable,
                          injection_cases,
)

__all__ = ["CASES", "CONTROLS", "EXCHANGES", "INJECTION_PAYLOADS", "MAX_BYTES", "QUEUES", "Case",
           "Dead", "Done", "NoOp", "Unroutable", "injection_cases"]
