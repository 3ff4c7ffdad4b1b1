"""The outbox relay (``conveyor run relay``) and its ``conveyor relay status`` command."""

from workers.relay.service import OutboxRelay

__all__ = ["OutboxRelay"]
