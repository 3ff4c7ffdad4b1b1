"""Conveyor: event-driven order processing between RabbitMQ and PostgreSQL.

One installed namespace for the project's top-level folders (``conveyor.workers``,
``conveyor.schemas``, ``conveyor.db``, ``conveyor.devservices``): in the repository they sit
at the root, each a role of its own; ``conveyor/`` links them under one distinctive name.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("conveyor")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
