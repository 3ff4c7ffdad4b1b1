"""The ops console for dead-lettered messages (``conveyor dlq ...``).

One job per module:

- ``letters``: what a dead letter says about itself (pure: properties + body → ``DeadLetter``);
- ``fingerprint``: failures grouped by error class, place and normalised message (pure);
- ``selection``: which letters a command acts on, and the time/duration parsing behind it (pure);
- ``reader``: the broker side, a locked, order-preserving look at a DLQ (nothing consumed);
- ``limits``: which delivery limit applies to a DLQ (argument, version default, policies);
- ``replay``, ``purge``, ``transfer`` (export/import): the state-changing commands;
- ``lookup``: what the database knows about a letter's message and order;
- ``audit``: who did what, recorded through ``conveyor.db.audit``;
- ``render``: tables and text; ``cli``: argument parsing and output only.
"""
