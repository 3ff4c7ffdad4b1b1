"""The one error a message can fail validation with: ``InvalidMessage``, carrying a short code.

Invalid messages are never retried: the runtime sends them straight to the DLQ with
the code and detail in the headers.
"""

from __future__ import annotations


class InvalidMessage(Exception):
    """The message can never be processed as sent (size, encoding, JSON, schema, type)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
