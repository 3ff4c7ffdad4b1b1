"""The names of the roles a ``conveyor run`` process can take: message workers and services.

Kept apart from ``bootstrap`` (which imports every handler and the runtime) so that the
command line can list them without loading the workers; ``bootstrap`` checks they agree.
"""

WORKER_NAMES: tuple[str, ...] = ("orders", "payments", "shipments")
SERVICES: tuple[str, ...] = ("relay", "expirer")
ALL: tuple[str, ...] = WORKER_NAMES + SERVICES
