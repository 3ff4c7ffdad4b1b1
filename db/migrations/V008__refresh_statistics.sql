-- Planner statistics Conveyor keeps fresh itself (docs/performance.md, "statistics").
--
-- A VACUUM of the freshly migrated, still empty tables (a restore or upgrade runbook does
-- one) records them as empty (reltuples 0). Long-lived worker connections then cache
-- generic plans made for empty tables (psycopg's prepared statements, the foreign-key
-- triggers' saved plans) and keep them while the tables grow, unless an ANALYZE replaces the
-- statistics: that invalidates every cached plan on the table in every session. With
-- autovacuum off, or lagging under a heavy write load, nothing runs that ANALYZE.
--
-- conveyor_refresh_statistics() ANALYZEs each of this schema's tables whose rows changed
-- by at least `min_changes` and by at least `fraction` of its row estimate since it was last
-- analysed, and returns their names. SECURITY DEFINER, owned by conveyor_owner: the worker
-- role may not ANALYZE tables it does not own (PostgreSQL 15 has no MAINTAIN privilege), and
-- it may run this and nothing more. Only Conveyor's tables: those conveyor_owner owns.
CREATE FUNCTION conveyor_refresh_statistics(min_changes bigint, fraction double precision)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stale record;
BEGIN
    FOR stale IN
        SELECT s.schemaname, s.relname
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE c.relowner = 'conveyor_owner'::regrole
          AND s.n_mod_since_analyze >= greatest(min_changes, 1)
          AND s.n_mod_since_analyze >= fraction * greatest(c.reltuples, 0)
        ORDER BY s.n_mod_since_analyze DESC
    LOOP
        EXECUTE format('ANALYZE %I.%I', stale.schemaname, stale.relname);
        RETURN NEXT stale.relname;
    END LOOP;
END
$$;

ALTER FUNCTION conveyor_refresh_statistics(bigint, double precision) OWNER TO conveyor_owner;
REVOKE ALL ON FUNCTION conveyor_refresh_statistics(bigint, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor_refresh_statistics(bigint, double precision) TO conveyor_worker;
