"""The kit for shops and partners: what a service on the other side of the bus needs.

It owns the client side of the contract, built on the same code the workers run:

- ``contract.py``: the consumed message types and ``check(type, body)``, which runs the
  worker's own delivery parser (``runtime/messages.parse_delivery``) and gives the verdict
  and the reason a worker would record in ``x-conveyor-error-message``;
- ``publisher.py``: ``ConveyorPublisher``, validate-then-publish with confirms, ``mandatory``,
  persistence and the contract's properties (``conveyor publish`` uses it too);
- ``testing.py``: ``InMemoryConveyor``, the real handlers against the in-memory unit of work
  (``fakes.py``), for a shop's or partner's own unit tests;
- ``pytest_plugin.py``: the ``conveyor_service`` fixture, a real Conveyor on throwaway
  servers (``pytest -p conveyor.workers.kit.pytest_plugin``). Like the demo, it is test
  tooling and the one part of the kit that imports ``conveyor.devservices``.

Nothing here connects at import time. See docs/clients.md.
"""
