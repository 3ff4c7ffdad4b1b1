-- Least privilege (docs/security.md). Three group roles; logins are granted one of them:
--   conveyor_owner     owns every schema object and runs the migrations (`conveyor db ...`),
--                      the operator commands (stock set, reconcile, dlq) run as it too;
--   conveyor_worker    `conveyor run` (orders, payments, shipments, relay, expirer): the DML
--                      each table needs and nothing else: no DDL, no TRUNCATE, no access to
--                      the migration history or the DLQ console's audit trail;
--   conveyor_readonly  reporting: SELECT on the business tables, one tenant at a time
--                      (row-level security on `conveyor.tenant`).
-- Roles belong to the cluster, not to this database: other databases (test runs, other
-- environments) share them. So they are created only when missing, and one created a moment
-- ago by a migration running in another database is not an error.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['conveyor_owner', 'conveyor_worker', 'conveyor_readonly'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS',
                               role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by a migration in another database
            END;
        END IF;
    END LOOP;
    -- Whoever runs the migrations must be able to act as the owner (a superuser always can;
    -- a deploy login with CREATEROLE becomes a member here).
    IF NOT pg_has_role(current_user, 'conveyor_owner', 'MEMBER') THEN
        EXECUTE format('GRANT conveyor_owner TO %I', current_user);
    END IF;
END
$$;

-- The schema: nobody creates objects in it but the owner (PostgreSQL 15 already revokes
-- CREATE from PUBLIC on new clusters; an upgraded one may still have it).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO conveyor_owner;
GRANT USAGE ON SCHEMA public TO conveyor_worker, conveyor_readonly;

-- Every existing table, sequence and function changes hands. The migration runner applies
-- later migrations as conveyor_owner (db/migrate.py), so what they create is its too.
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND NOT (c.relkind = 'S' AND EXISTS (  -- serial sequences follow their table
              SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO conveyor_owner',
                       CASE object.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                            WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                            ELSE 'TABLE' END, object.name);
    END LOOP;
    FOR object IN SELECT p.oid::regprocedure AS name FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO conveyor_owner', object.name);
    END LOOP;
END
$$;

-- Nothing for PUBLIC: a login that is none of the roles sees nothing.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;

-- conveyor_worker, table by table (every statement in db/*.py that `conveyor run` issues).
-- UPDATE, DELETE and FOR UPDATE need SELECT too (their WHERE clauses read the rows), and
-- INSERT ... ON CONFLICT (key) needs SELECT on the key columns: only those are granted.
GRANT INSERT                         ON tenants            TO conveyor_worker;  -- a new tenant's first order
GRANT SELECT, UPDATE                 ON stock_levels       TO conveyor_worker;  -- reserve, release, commit
GRANT INSERT                         ON stock_movements    TO conveyor_worker;  -- the ledger trigger
GRANT INSERT, SELECT (order_id)      ON order_registry     TO conveyor_worker;  -- claim the id, RETURNING
GRANT SELECT, INSERT, UPDATE         ON orders             TO conveyor_worker;  -- FOR UPDATE, move
GRANT INSERT                         ON order_lines        TO conveyor_worker;
GRANT SELECT, INSERT, UPDATE         ON reservations       TO conveyor_worker;
GRANT SELECT, INSERT                 ON inbox              TO conveyor_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox             TO conveyor_worker;  -- handlers add, the relay claims and settles
GRANT INSERT, SELECT (payment_id)    ON payments           TO conveyor_worker;  -- one row per payment id
GRANT INSERT, SELECT (shipment_id, event) ON shipments     TO conveyor_worker;  -- one row per shipment and event
GRANT INSERT                         ON order_transitions  TO conveyor_worker;
GRANT SELECT, UPDATE                 ON relay_lease        TO conveyor_worker;  -- the relay's lease (V003)
GRANT USAGE ON SEQUENCE outbox_id_seq, stock_movements_id_seq, order_transitions_id_seq TO conveyor_worker;
-- Trigger functions fire without EXECUTE; the routing-key functions they call need it.
GRANT EXECUTE ON FUNCTION conveyor_routing_word(text), conveyor_stock_routing_key(text, text)
    TO conveyor_worker;
-- Not granted, on purpose: products, schema_history, dlq_audit_runs, dlq_audit_messages,
-- conveyor_create_order_partitions() and the order partitions themselves (rows go through
-- `orders`).

-- conveyor_readonly: the business tables, nothing about messages or operations.
GRANT SELECT ON tenants, products, stock_levels, stock_movements, order_registry, orders, order_lines,
                reservations, payments, shipments, order_transitions TO conveyor_readonly;

-- Row-level security: the reader sees the tenant named by `SET conveyor.tenant = '...'` and
-- nothing when it is unset. Policies name their roles, so the owner (who bypasses RLS as the
-- tables' owner) and the worker (whose policy allows every row) work as before: no FORCE.
-- Tables without a tenant column follow their order through order_registry.
DO $$
DECLARE
    tenant_tables text[] := ARRAY['tenants', 'products', 'stock_levels', 'stock_movements',
                                  'order_registry', 'orders', 'reservations'];
    order_tables text[] := ARRAY['order_lines', 'payments', 'shipments', 'order_transitions'];
    worker_tables text[] := ARRAY['tenants', 'stock_levels', 'stock_movements', 'order_registry', 'orders',
                                  'reservations', 'order_lines', 'payments', 'shipments', 'order_transitions'];
    name text;
BEGIN
    FOREACH name IN ARRAY tenant_tables || order_tables LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
    END LOOP;
    FOREACH name IN ARRAY tenant_tables LOOP
        EXECUTE format($p$CREATE POLICY reader_tenant ON %I FOR SELECT TO conveyor_readonly
                          USING (tenant_id = current_setting('conveyor.tenant', true))$p$, name);
    END LOOP;
    FOREACH name IN ARRAY order_tables LOOP
        EXECUTE format($p$CREATE POLICY reader_tenant ON %I FOR SELECT TO conveyor_readonly
                          USING (order_id IN (SELECT r.order_id FROM order_registry r
                                              WHERE r.tenant_id = current_setting('conveyor.tenant', true)))$p$,
                       name);
    END LOOP;
    FOREACH name IN ARRAY worker_tables LOOP
        EXECUTE format('CREATE POLICY worker_all ON %I TO conveyor_worker USING (true) WITH CHECK (true)', name);
    END LOOP;
END
$$;
