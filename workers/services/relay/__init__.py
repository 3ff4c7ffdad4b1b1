"""The outbox relay (``conveyor run relay``) and its ``conveyor relay status`` command."""

from conveyor.workers.services.relay.service import OutboxRelay

__all__ = ["OutboxRelay"]
