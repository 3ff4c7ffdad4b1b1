"""The migration runner's parts; ``conveyor.db.migrate`` is its front door.

- ``files``: migration files, their directives (``-- conveyor:no-transaction``,
  ``-- conveyor:contract``), their purpose and their statements;
- ``history``: ``public.schema_history`` (who applied what, when, how long, with how many
  lock retries) and ``public.schema_history_steps`` (progress of a non-transactional file);
- ``apply``: applying one file under a ``lock_timeout``, retried with backoff; a
  non-transactional file statement by statement, resumable;
- ``dryrun``: the pending files applied to a copy of the database, timed, with the locks
  each one took.
"""
