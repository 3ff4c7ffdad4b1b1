"""The restore drill (``make drill``, ``python -m tests.drill.run``; docs/backup.md): workers
under traffic on a PostgreSQL of our own whose WAL is archived by pgBackRest, a point in time T,
a disaster, a restore to T, and the proof. ``server.py`` is that PostgreSQL with its
repository (the backup tests use it too)."""
