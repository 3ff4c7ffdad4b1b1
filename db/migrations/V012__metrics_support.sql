-- What the metrics need (workers/observability/, docs/operations.md).

-- 1. `conveyor_db_oldest_transaction_seconds`: the oldest transaction holding the xmin horizon
-- back, whoever runs it (a report, a pg_dump, a forgotten BEGIN; docs/performance.md).
-- pg_stat_activity shows other roles' sessions' xact_start and backend_xmin only to members
-- of pg_read_all_stats. Granting a predefined role needs the migrating login itself (the
-- runner acts as conveyor_owner, which may not): where it cannot (some managed services) the
-- grant is skipped with a notice, and the metric sees the worker role's own sessions only.
DO $$
DECLARE
    acting text := current_user;
BEGIN
    EXECUTE 'RESET ROLE';
    BEGIN
        GRANT pg_read_all_stats TO conveyor_worker;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'pg_read_all_stats not granted to conveyor_worker: %', SQLERRM;
    END;
    EXECUTE format('SET LOCAL ROLE %I', acting);
END
$$;

-- 2. Periodic jobs that one process of the group runs per interval (the reconciliation
-- first): a process claims a run by moving `last_run_at` forward, and only the one whose
-- UPDATE matched runs it.
CREATE TABLE periodic_runs (
    name         text PRIMARY KEY,
    last_run_at  timestamptz NOT NULL DEFAULT '-infinity',
    last_holder  text,
    runs         bigint NOT NULL DEFAULT 0
);
INSERT INTO periodic_runs (name) VALUES ('reconcile');
GRANT SELECT, UPDATE ON periodic_runs TO conveyor_worker;
-- The reconciliation reads what `conveyor reconcile` reads (stock_levels, stock_movements,
-- reservations and orders are granted already).
