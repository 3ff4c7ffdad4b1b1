-- Schema namespaces, and partitions that look after themselves (docs/database.md,
-- docs/data-lifecycle.md).
--
-- 1. Every object moves out of `public` into its component's schema:
--      inventory    tenants, the catalogue, stock items, the ledger and the levels view, reservations
--      orders       the order registry, orders, lines, payments, shipments, transitions, daily summaries
--      messaging    the inbox, the outbox and its rotation, the relay's lease
--      privacy      customers' personal data, encrypted, and their data keys
--      audit        the DLQ console's trail, privacy requests
--      archive      the catalogue of archived months
--      maintenance  what keeps the others healthy: partition sets, periodic jobs
--    `public` keeps only schema_history (the migration runner's own table). Names stay
--    unqualified in the code: Conveyor's connections set search_path (db/connection.py), and
--    so does the database (for psql and hand-written SQL).
-- 2. Orders are partitioned by the time Conveyor recorded them (`created_at`, the intake's
--    transaction time), never by the shop's `placed_at`: that is untrusted input (an order
--    dated 2027-09-15 used to land in the default partition and block creating that month's
--    partition). `placed_at` is kept as data, stored without harm whatever its value.
-- 3. The inbox (weekly, by the day it was processed) and the transition log (monthly) are
--    partitioned too, so their retention drops whole partitions instead of DELETEing rows.
--    Weeks, not days: every statement on a partitioned table locks each of its partitions
--    (PostgreSQL 15 prunes after locking a cached plan's), and past 16 locks a backend leaves
--    the lock manager's fast path; a week keeps the inbox at a handful of partitions.
-- 4. conveyor_ensure_partition() creates a partition and first moves whatever rows the
--    default partition holds for its range, so the default partition can never block it.
--
-- Workers must be restarted after this migration (their sessions' search_path predates the
-- schemas); `conveyor run` waits for it before consuming anyway (safe start).

-- 1. The schemas -------------------------------------------------------------------------
-- Creating a schema needs CREATE on the database: the migrating login has it (it owns the
-- database or is a superuser), conveyor_owner need not, so the login creates them for it.
DO $$
DECLARE
    acting text := current_user;
    name text;
BEGIN
    EXECUTE 'RESET ROLE';
    FOREACH name IN ARRAY ARRAY['inventory', 'orders', 'messaging', 'privacy', 'audit', 'archive', 'maintenance'] LOOP
        EXECUTE format('CREATE SCHEMA %I AUTHORIZATION conveyor_owner', name);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', name);
    END LOOP;
    BEGIN  -- psql and hand-written SQL find the objects without schema names
        EXECUTE format('ALTER DATABASE %I SET search_path = orders, inventory, messaging, privacy, audit, '
                       'archive, maintenance, public', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'search_path not set on the database (%): Conveyor''s own connections set it', SQLERRM;
    END;
    EXECUTE format('SET LOCAL ROLE %I', acting);
END
$$;
SET LOCAL search_path = orders, inventory, messaging, privacy, audit, archive, maintenance, public;

COMMENT ON SCHEMA inventory IS 'tenants, the catalogue, stock items, the stock ledger (the truth of levels) and reservations';
COMMENT ON SCHEMA orders IS 'orders and what happened to them: registry, orders, lines, payments, shipments, transitions, daily summaries';
COMMENT ON SCHEMA messaging IS 'exactly-once plumbing: the inbox of processed message ids, the outbox and the relay''s lease';
COMMENT ON SCHEMA privacy IS 'customers'' personal data, encrypted with per-customer data keys (docs/privacy.md)';
COMMENT ON SCHEMA audit IS 'who did what: the DLQ console''s runs and messages, privacy requests';
COMMENT ON SCHEMA archive IS 'the catalogue of months moved out of the hot tables (docs/data-lifecycle.md)';
COMMENT ON SCHEMA maintenance IS 'what keeps the data healthy: partition sets and their functions, periodic jobs';

ALTER TABLE public.tenants SET SCHEMA inventory;
ALTER TABLE public.products SET SCHEMA inventory;
ALTER TABLE public.stock_items SET SCHEMA inventory;
ALTER TABLE public.stock_movements SET SCHEMA inventory;
ALTER VIEW public.stock_levels SET SCHEMA inventory;
ALTER TABLE public.reservations SET SCHEMA inventory;
ALTER TABLE public.order_registry SET SCHEMA orders;
ALTER TABLE public.order_lines SET SCHEMA orders;
ALTER TABLE public.payments SET SCHEMA orders;
ALTER TABLE public.shipments SET SCHEMA orders;
ALTER TABLE public.outbox SET SCHEMA messaging;
ALTER TABLE public.outbox_slot_0 SET SCHEMA messaging;
ALTER TABLE public.outbox_slot_1 SET SCHEMA messaging;
ALTER TABLE public.outbox_slot_2 SET SCHEMA messaging;
ALTER TABLE public.outbox_rotation SET SCHEMA messaging;
ALTER TABLE public.relay_lease SET SCHEMA messaging;
ALTER TABLE public.dlq_audit_runs SET SCHEMA audit;
ALTER TABLE public.dlq_audit_messages SET SCHEMA audit;
ALTER TABLE public.periodic_runs SET SCHEMA maintenance;

ALTER FUNCTION public.conveyor_stock_changed_payload(text, text, bigint, integer, integer, text) SET SCHEMA inventory;
ALTER FUNCTION public.conveyor_stock_changes() SET SCHEMA inventory;
ALTER FUNCTION public.conveyor_routing_word(text) SET SCHEMA inventory;
ALTER FUNCTION public.conveyor_stock_routing_key(text, text) SET SCHEMA inventory;
ALTER FUNCTION public.conveyor_stock_levels_write() SET SCHEMA inventory;
ALTER FUNCTION public.conveyor_outbox_slot() SET SCHEMA messaging;
ALTER FUNCTION public.conveyor_outbox_rotate(bigint) SET SCHEMA messaging;
ALTER FUNCTION messaging.conveyor_outbox_rotate(bigint) SET search_path = messaging, pg_temp;
ALTER FUNCTION public.conveyor_refresh_statistics(bigint, double precision) SET SCHEMA maintenance;
DROP FUNCTION public.conveyor_create_order_partitions(timestamptz, integer);

-- The statistics keeper (V008) on partitioned tables: it ANALYZEs the partitions that changed
-- enough, as before, and then their partitioned parents, whose statistics of the whole
-- hierarchy nothing else keeps (autovacuum never analyses a partitioned table).
CREATE OR REPLACE FUNCTION maintenance.conveyor_refresh_statistics(min_changes bigint, fraction double precision)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stale record;
    parent regclass;
    parents regclass[] := '{}';
BEGIN
    FOR stale IN
        SELECT s.schemaname, s.relname, s.relid
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE c.relowner = 'conveyor_owner'::regrole
          AND s.n_mod_since_analyze >= greatest(min_changes, 1)
          AND s.n_mod_since_analyze >= fraction * greatest(c.reltuples, 0)
        ORDER BY s.n_mod_since_analyze DESC
    LOOP
        EXECUTE format('ANALYZE %I.%I', stale.schemaname, stale.relname);
        RETURN NEXT stale.relname;
        SELECT pg_partition_root(stale.relid) INTO parent;
        IF parent IS NOT NULL AND parent <> stale.relid AND NOT parent = ANY(parents) THEN
            parents := parents || parent;
        END IF;
    END LOOP;
    FOREACH parent IN ARRAY parents LOOP
        EXECUTE format('ANALYZE %s', parent);
        RETURN NEXT (SELECT relname::text FROM pg_class WHERE oid = parent);
    END LOOP;
END
$$;

-- 2. Partition sets and their maintenance -------------------------------------------------
CREATE TABLE maintenance.partition_sets (
    parent       regclass PRIMARY KEY,
    key_column   text NOT NULL,
    granularity  text NOT NULL CHECK (granularity IN ('day', 'week', 'month')),
    purpose      text NOT NULL
);
COMMENT ON TABLE maintenance.partition_sets IS
    'the range-partitioned tables conveyor_maintain_partitions() keeps partitions ahead for';

-- The range [lo, hi) of the partition holding `day`, as literals of the key's type.
CREATE FUNCTION maintenance.conveyor_partition_range(set_row maintenance.partition_sets, day date,
                                                     OUT lo date, OUT hi date, OUT suffix text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE set_row.granularity WHEN 'month' THEN date_trunc('month', day)::date
                                     WHEN 'week' THEN date_trunc('week', day)::date ELSE day END,
           CASE set_row.granularity WHEN 'month' THEN (date_trunc('month', day) + interval '1 month')::date
                                     WHEN 'week' THEN date_trunc('week', day)::date + 7 ELSE day + 1 END,
           CASE set_row.granularity WHEN 'month' THEN to_char(day, 'YYYY_MM')
                                     WHEN 'week' THEN to_char(date_trunc('week', day), 'YYYY_MM_DD')
                                     ELSE to_char(day, 'YYYY_MM_DD') END
$$;

CREATE FUNCTION maintenance.conveyor_bound_literal(parent regclass, key_column text, day date) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN a.atttypid = 'date'::regtype THEN day::text
                ELSE to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00' END
    FROM pg_attribute a WHERE a.attrelid = parent AND a.attname = key_column
$$;

-- Create the partition of `parent` that holds `day` unless it exists; rows the default
-- partition took for that range move into it first (under the default's lock), so the
-- default partition never blocks a new partition. Returns the new partition's name or NULL.
CREATE FUNCTION maintenance.conveyor_ensure_partition(target regclass, day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    s maintenance.partition_sets;
    r record;
    part_schema text;
    part_name text;
    default_part regclass;
    lo_lit text;
    hi_lit text;
BEGIN
    SELECT * INTO STRICT s FROM maintenance.partition_sets WHERE parent = target;
    r := maintenance.conveyor_partition_range(s, day);
    SELECT n.nspname, c.relname || '_' || r.suffix INTO part_schema, part_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
    IF to_regclass(format('%I.%I', part_schema, part_name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    lo_lit := maintenance.conveyor_bound_literal(target, s.key_column, r.lo);
    hi_lit := maintenance.conveyor_bound_literal(target, s.key_column, r.hi);
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                   part_schema, part_name, target);
    SELECT p.partdefid::regclass INTO default_part FROM pg_partitioned_table p
    WHERE p.partrelid = target AND p.partdefid <> 0;
    IF default_part IS NOT NULL THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', default_part);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= %L AND %I < %L RETURNING *) '
                       'INSERT INTO %I.%I SELECT * FROM moved',
                       default_part, s.key_column, lo_lit, s.key_column, hi_lit, part_schema, part_name);
    END IF;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   target, part_schema, part_name, lo_lit, hi_lit);
    RETURN format('%I.%I', part_schema, part_name);
END
$$;

-- The partitions of every set from this month (week, day) to `months_ahead` months ahead
-- (monthly sets) or until `days_ahead` days ahead are covered (weekly and daily sets); returns the ones created, and as 'busy <set>' a set whose default partition
-- it could not lock within `lock_wait_ms` (a long reader: the next pass tries again, and no
-- writer waits behind it meanwhile). One caller at a time; SECURITY DEFINER so the
-- maintenance loop of `conveyor run` (conveyor_worker, no DDL) may run it and nothing more.
CREATE FUNCTION maintenance.conveyor_maintain_partitions(months_ahead integer, days_ahead integer,
                                                         lock_wait_ms integer DEFAULT 500)
RETURNS SETOF text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = maintenance, pg_temp
AS $$
DECLARE
    s maintenance.partition_sets;
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
    created text;
BEGIN
    IF NOT pg_try_advisory_xact_lock(27988542918456680) THEN  -- "convpar"
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', lock_wait_ms::text, true);
    FOR s IN SELECT * FROM maintenance.partition_sets ORDER BY parent::text LOOP
        BEGIN
            FOR day IN
                SELECT CASE s.granularity WHEN 'month' THEN (date_trunc('month', today) + make_interval(months => i))::date
                            ELSE today + i END
                FROM generate_series(0, CASE s.granularity WHEN 'month' THEN months_ahead ELSE days_ahead END) i
                WHERE s.granularity <> 'week' OR i % 7 = 0 OR i = days_ahead
            LOOP
                created := maintenance.conveyor_ensure_partition(s.parent, day);
                IF created IS NOT NULL THEN
                    RETURN NEXT created;
                END IF;
            END LOOP;
        EXCEPTION WHEN lock_not_available THEN
            RETURN NEXT 'busy ' || s.parent::text;
        END;
    END LOOP;
END
$$;

-- The partitions of `target` (other than the default) whose whole range ends at or before
-- `cutoff`, oldest first, with their upper bounds.
CREATE FUNCTION maintenance.conveyor_partitions_before(target regclass, cutoff date)
RETURNS TABLE (partition regclass, upper_bound date)
LANGUAGE sql STABLE AS $$
    SELECT i.inhrelid::regclass, b.upper_bound
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([0-9-]{10})')::date
                        AS upper_bound) b
    WHERE i.inhparent = target AND b.upper_bound IS NOT NULL AND b.upper_bound <= cutoff
    ORDER BY b.upper_bound
$$;

-- Retention: drop the partitions of a set whose range ended `retention` ago. A DROP takes an
-- ACCESS EXCLUSIVE lock on the parent (PostgreSQL 15), so it waits at most `lock_wait_ms` for
-- the writers' transactions and gives up (the next run tries again) rather than queue every
-- writer behind it. Returns each dropped partition with its row estimate.
CREATE FUNCTION maintenance.conveyor_drop_partitions(target regclass, retention interval, lock_wait_ms integer)
RETURNS TABLE (dropped text, row_estimate bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = maintenance, pg_temp
AS $$
DECLARE
    old record;
    cutoff date := ((now() - retention) AT TIME ZONE 'UTC')::date;
BEGIN
    PERFORM set_config('lock_timeout', lock_wait_ms::text, true);
    FOR old IN SELECT * FROM maintenance.conveyor_partitions_before(target, cutoff) LOOP
        dropped := old.partition::text;
        SELECT greatest(reltuples, 0)::bigint INTO row_estimate FROM pg_class WHERE oid = old.partition;
        BEGIN
            EXECUTE format('DROP TABLE %s', old.partition);
        EXCEPTION WHEN lock_not_available THEN
            RETURN;  -- writers were busy: next time
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Rows each default partition holds: 0 unless maintenance fell behind (a pass moves them).
CREATE FUNCTION maintenance.conveyor_default_rows() RETURNS TABLE (parent text, row_count bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = maintenance, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    FOR s IN SELECT ps.parent, p.partdefid::regclass AS default_part
             FROM maintenance.partition_sets ps JOIN pg_partitioned_table p ON p.partrelid = ps.parent
             WHERE p.partdefid <> 0 ORDER BY ps.parent::text LOOP
        parent := s.parent::text;
        EXECUTE format('SELECT count(*) FROM %s', s.default_part) INTO row_count;
        RETURN NEXT;
    END LOOP;
END
$$;


-- 3. Orders, partitioned by the time Conveyor recorded them --------------------------------
-- The registry routes an order id to its partition: its created_at is the order row's. The
-- archive and the summaries select a month's orders by it.
CREATE INDEX order_registry_created_idx ON orders.order_registry (created_at);
UPDATE orders.order_registry r SET created_at = o.created_at
FROM public.orders o WHERE o.order_id = r.order_id AND r.created_at <> o.created_at;

CREATE TABLE orders.orders (
    order_id      uuid NOT NULL,
    placed_at     timestamptz NOT NULL,
    tenant_id     text NOT NULL,
    customer_id   text NOT NULL,
    currency      char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total         numeric(28, 4) NOT NULL CHECK (total >= 0),
    status        text NOT NULL CHECK (status IN
                    ('RESERVED', 'REJECTED', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'EXPIRED')),
    status_reason text,
    source_message_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, created_at)
) PARTITION BY RANGE (created_at);
COMMENT ON COLUMN orders.orders.placed_at IS 'the shop''s timestamp: untrusted, stored as data, never a partition key';
COMMENT ON COLUMN orders.orders.created_at IS 'when Conveyor recorded the order (= order_registry.created_at): the partition key';
CREATE TABLE orders.orders_default PARTITION OF orders.orders DEFAULT;
CREATE INDEX orders_status_updated_idx ON orders.orders (status, updated_at);
CREATE INDEX orders_reserved_age_idx ON orders.orders (updated_at) WHERE status = 'RESERVED';

INSERT INTO maintenance.partition_sets VALUES
    ('orders.orders', 'created_at', 'month', 'orders by the month Conveyor recorded them; archived after CONVEYOR_HOT_MONTHS');

-- A partition for every month that has orders, then the rows.
SELECT maintenance.conveyor_ensure_partition('orders.orders', m::date)
FROM generate_series(date_trunc('month', coalesce((SELECT min(created_at) FROM public.orders), now()) AT TIME ZONE 'UTC'),
                     date_trunc('month', now() AT TIME ZONE 'UTC'), interval '1 month') m;
INSERT INTO orders.orders SELECT order_id, placed_at, tenant_id, customer_id, currency, total, status, status_reason,
                                 source_message_id, created_at, updated_at FROM public.orders;
DROP TABLE public.orders;

-- 4. The transition log, monthly by occurred_at --------------------------------------------
ALTER TABLE public.order_transitions RENAME TO order_transitions_before_v013;
ALTER SEQUENCE public.order_transitions_id_seq OWNED BY NONE;
CREATE TABLE orders.order_transitions (
    id           bigint NOT NULL DEFAULT nextval('public.order_transitions_id_seq'),
    order_id     uuid NOT NULL REFERENCES orders.order_registry (order_id),
    from_status  text,
    to_status    text NOT NULL,
    event        text NOT NULL,
    message_id   text,
    reason       text,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE orders.order_transitions_default PARTITION OF orders.order_transitions DEFAULT;
CREATE INDEX order_transitions_order_idx ON orders.order_transitions (order_id, id);
INSERT INTO maintenance.partition_sets VALUES
    ('orders.order_transitions', 'occurred_at', 'month', 'every state change; dropped after CONVEYOR_TRANSITIONS_RETENTION');
SELECT maintenance.conveyor_ensure_partition('orders.order_transitions', m::date)
FROM generate_series(date_trunc('month', coalesce((SELECT min(occurred_at) FROM public.order_transitions_before_v013), now())
                                 AT TIME ZONE 'UTC'),
                     date_trunc('month', now() AT TIME ZONE 'UTC'), interval '1 month') m;
INSERT INTO orders.order_transitions SELECT * FROM public.order_transitions_before_v013;
DROP TABLE public.order_transitions_before_v013;
ALTER SEQUENCE public.order_transitions_id_seq SET SCHEMA orders;
ALTER SEQUENCE orders.order_transitions_id_seq OWNED BY orders.order_transitions.id;

-- 5. The inbox, weekly by the day a message was processed ---------------------------------
-- The duplicate check spans every partition kept (db/inbox.py); within a day the unique key
-- (message_id, processed_on) also catches two deliveries racing each other.
CREATE TABLE messaging.inbox (
    message_id    text NOT NULL CHECK (length(message_id) BETWEEN 1 AND 255),
    handler       text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    processed_on  date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
    PRIMARY KEY (message_id, processed_on)
) PARTITION BY RANGE (processed_on);
CREATE TABLE messaging.inbox_default PARTITION OF messaging.inbox DEFAULT;
INSERT INTO maintenance.partition_sets VALUES
    ('messaging.inbox', 'processed_on', 'week', 'processed message ids; dropped after CONVEYOR_INBOX_RETENTION');
-- The ids processed before this week (if any) go into one partition; retention drops it in time.
DO $$
DECLARE
    this_week date := date_trunc('week', now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF EXISTS (SELECT FROM public.inbox WHERE processed_at < this_week::timestamp AT TIME ZONE 'UTC') THEN
        EXECUTE format('CREATE TABLE messaging.inbox_before_v013 PARTITION OF messaging.inbox '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', this_week);
    END IF;
END
$$;
SELECT maintenance.conveyor_ensure_partition('messaging.inbox', (now() AT TIME ZONE 'UTC')::date);
INSERT INTO messaging.inbox (message_id, handler, processed_at, processed_on)
SELECT message_id, handler, processed_at, least((processed_at AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date)
FROM public.inbox;
DROP TABLE public.inbox;

-- 6. Daily summaries: reports never scan cold data ----------------------------------------
CREATE TABLE orders.daily_summaries (
    tenant_id     text NOT NULL,
    day           date NOT NULL,
    status        text NOT NULL,
    currency      char(3) NOT NULL,
    orders        bigint NOT NULL CHECK (orders >= 0),
    amount        numeric(38, 4) NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day, status, currency)
);
COMMENT ON TABLE orders.daily_summaries IS
    'orders per tenant, day recorded (UTC), current status and currency: counts and amounts; final once the month is archived';

-- 7. The archive's catalogue ----------------------------------------------------------------
CREATE TABLE archive.months (
    month        date PRIMARY KEY CHECK (month = date_trunc('month', month)),
    state        text NOT NULL CHECK (state IN ('archived', 'restored')),
    location     text NOT NULL,
    manifest     jsonb NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    restored_at  timestamptz,
    operator     text NOT NULL
);
COMMENT ON TABLE archive.months IS 'months exported to compressed files with checksums and removed from the hot tables';

-- 8. Personal data -------------------------------------------------------------------------
-- One data key per customer, wrapped by a key of CONVEYOR_PII_KEY_FILE (key_id): erasing a
-- customer deletes the data key, which shreds every copy of their data (archives included).
CREATE TABLE privacy.customer_keys (
    tenant_id    text NOT NULL,
    customer_id  text NOT NULL,
    key_id       text NOT NULL,
    wrapped_key  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX customer_keys_key_id_idx ON privacy.customer_keys (key_id);
-- The `customer` object of an order.created, sealed with the customer's data key (the order
-- id is the associated data: a sealed value cannot be moved to another order).
CREATE TABLE privacy.order_customers (
    order_id     uuid PRIMARY KEY REFERENCES orders.order_registry (order_id),
    tenant_id    text NOT NULL,
    customer_id  text NOT NULL,
    sealed       bytea NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_customers_customer_idx ON privacy.order_customers (tenant_id, customer_id);

CREATE TABLE audit.privacy_requests (
    request_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    action        text NOT NULL CHECK (action IN ('export', 'erase', 'retention', 'rotate-key')),
    tenant_id     text,
    subject_hash  text,            -- sha256 of tenant and customer id: never the id itself
    operator      text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX privacy_requests_subject_idx ON audit.privacy_requests (subject_hash);

-- 9. Housekeeping the maintenance loop runs (SECURITY DEFINER: the worker role deletes nothing).
-- Ledger versions older than `retention` that are not their SKU's newest (the level), `batch`
-- at a time; returns how many went.
CREATE FUNCTION maintenance.conveyor_compact_ledger(retention interval, batch integer) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = inventory, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM inventory.stock_movements m
    WHERE m.id IN (SELECT o.id FROM inventory.stock_movements o
                   WHERE o.occurred_at < now() - retention
                     AND EXISTS (SELECT FROM inventory.stock_movements n
                                 WHERE n.tenant_id = o.tenant_id AND n.sku = o.sku AND n.version > o.version)
                   ORDER BY o.id LIMIT batch);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- DLQ console runs older than `retention`, with their messages, `batch` runs at a time.
CREATE FUNCTION maintenance.conveyor_expire_dlq_audit(retention interval, batch integer) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = audit, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    WITH old AS (SELECT run_id FROM audit.dlq_audit_runs
                 WHERE started_at < now() - retention AND outcome <> 'running' ORDER BY started_at LIMIT batch),
         gone AS (DELETE FROM audit.dlq_audit_messages m USING old WHERE m.run_id = old.run_id)
    DELETE FROM audit.dlq_audit_runs r USING old WHERE r.run_id = old.run_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- Personal data of orders finished (rejected, delivered, cancelled, expired) more than
-- `retention` ago; the data keys stay (the customer may have newer orders).
CREATE FUNCTION maintenance.conveyor_purge_personal_data(retention interval, batch integer) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = privacy, orders, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM privacy.order_customers c
    WHERE c.order_id IN (SELECT oc.order_id FROM privacy.order_customers oc
                         JOIN orders.order_registry r ON r.order_id = oc.order_id
                         JOIN orders.orders o ON o.order_id = r.order_id AND o.created_at = r.created_at
                         WHERE o.status IN ('REJECTED', 'DELIVERED', 'CANCELLED', 'EXPIRED')
                           AND o.updated_at < now() - retention
                         LIMIT batch);
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- Daily summaries of the days from `since` on, recomputed from the hot orders.
CREATE FUNCTION maintenance.conveyor_refresh_summaries(since date) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = orders, pg_temp
AS $$
DECLARE
    written bigint;
    lower_bound timestamptz := since::timestamp AT TIME ZONE 'UTC';
BEGIN
    DELETE FROM orders.daily_summaries WHERE day >= since
        AND NOT EXISTS (SELECT FROM archive.months a
                        WHERE a.state = 'archived' AND a.month = date_trunc('month', day));
    INSERT INTO orders.daily_summaries (tenant_id, day, status, currency, orders, amount)
    SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, status, currency, count(*), sum(total)
    FROM orders.orders WHERE created_at >= lower_bound
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, day, status, currency) DO UPDATE
        SET orders = excluded.orders, amount = excluded.amount, refreshed_at = now();
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

-- What each table is for, in docs/database.md (generated from these comments and the catalog).
COMMENT ON TABLE inventory.tenants IS 'the shops; a tenant is created by its first order or stock change';
COMMENT ON TABLE inventory.products IS 'the catalogue: one row per (tenant, SKU), price and currency';
COMMENT ON TABLE inventory.stock_items IS 'which SKUs have stock (V011): the key the ledger''s versions belong to';
COMMENT ON TABLE inventory.stock_movements IS 'the stock ledger (V011): one version per change; the newest is the level';
COMMENT ON VIEW inventory.stock_levels IS 'each item''s newest ledger version; writes append a version (INSTEAD OF trigger)';
COMMENT ON TABLE inventory.reservations IS 'stock held per (order, SKU): HELD, then RELEASED or COMMITTED';
COMMENT ON TABLE orders.order_registry IS 'every order id once, with the time Conveyor recorded it (the route to its partition)';
COMMENT ON TABLE orders.orders IS 'orders, partitioned by the month Conveyor recorded them; archived after CONVEYOR_HOT_MONTHS';
COMMENT ON TABLE orders.order_lines IS 'the lines of each order with their outcome';
COMMENT ON TABLE orders.payments IS 'one row per payment id received';
COMMENT ON TABLE orders.shipments IS 'one row per (shipment id, event) received';
COMMENT ON TABLE orders.order_transitions IS 'every state change of every order, partitioned by month';
COMMENT ON TABLE messaging.inbox IS 'message ids processed, partitioned by week; kept CONVEYOR_INBOX_RETENTION';
COMMENT ON TABLE messaging.outbox IS 'events written with the change they describe, until the relay published them (3 rotating slots, V009)';
COMMENT ON TABLE messaging.outbox_rotation IS 'the outbox slot writers use now, and the rotation''s counters';
COMMENT ON TABLE messaging.relay_lease IS 'which relay leads (publishes) and until when';
COMMENT ON TABLE maintenance.periodic_runs IS 'jobs one process of the group runs per interval (reconcile, maintenance)';
COMMENT ON TABLE audit.dlq_audit_runs IS 'every replay, purge and import of the DLQ console: who, what, how it ended';
COMMENT ON TABLE audit.dlq_audit_messages IS 'what a DLQ console run did to each message';
COMMENT ON TABLE audit.privacy_requests IS 'privacy requests (export, erase, retention, key rotation) by subject hash, never the id';
COMMENT ON TABLE privacy.customer_keys IS 'one data key per customer, wrapped by a key of CONVEYOR_PII_KEY_FILE; deleting it shreds their data';
COMMENT ON TABLE privacy.order_customers IS 'each order''s customer object, sealed with the customer''s data key';

-- 10. Privileges -----------------------------------------------------------------------------
GRANT USAGE ON SCHEMA inventory, orders TO conveyor_worker, conveyor_readonly;
GRANT USAGE ON SCHEMA messaging, privacy, maintenance TO conveyor_worker;
-- The moved tables keep their grants and policies; the new ones get theirs.
REVOKE ALL ON ALL TABLES IN SCHEMA orders, messaging, privacy, audit, archive, maintenance FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA inventory, orders, messaging, privacy, audit, archive, maintenance FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON orders.orders TO conveyor_worker;
GRANT SELECT ON orders.orders, orders.order_transitions, orders.daily_summaries TO conveyor_readonly;
GRANT INSERT ON orders.order_transitions TO conveyor_worker;
GRANT USAGE ON SEQUENCE orders.order_transitions_id_seq TO conveyor_worker;
GRANT SELECT, INSERT ON messaging.inbox TO conveyor_worker;
GRANT SELECT (tenant_id, customer_id, key_id, wrapped_key), INSERT ON privacy.customer_keys TO conveyor_worker;
GRANT INSERT ON privacy.order_customers TO conveyor_worker;
GRANT SELECT ON maintenance.partition_sets TO conveyor_worker;
-- The state machine finds an order's partition through the registry (db/orders.py).
GRANT SELECT (created_at) ON orders.order_registry TO conveyor_worker;
INSERT INTO maintenance.periodic_runs (name) VALUES ('maintenance');
GRANT EXECUTE ON FUNCTION inventory.conveyor_routing_word(text), inventory.conveyor_stock_routing_key(text, text),
                          messaging.conveyor_outbox_slot(), messaging.conveyor_outbox_rotate(bigint),
                          maintenance.conveyor_refresh_statistics(bigint, double precision),
                          maintenance.conveyor_maintain_partitions(integer, integer, integer),
                          maintenance.conveyor_drop_partitions(regclass, interval, integer),
                          maintenance.conveyor_compact_ledger(interval, integer),
                          maintenance.conveyor_expire_dlq_audit(interval, integer),
                          maintenance.conveyor_purge_personal_data(interval, integer),
                          maintenance.conveyor_refresh_summaries(date),
                          maintenance.conveyor_default_rows()
    TO conveyor_worker;
ALTER TABLE orders.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders.order_transitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders.daily_summaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_tenant ON orders.orders FOR SELECT TO conveyor_readonly
    USING (tenant_id = current_setting('conveyor.tenant', true));
CREATE POLICY reader_tenant ON orders.daily_summaries FOR SELECT TO conveyor_readonly
    USING (tenant_id = current_setting('conveyor.tenant', true));
CREATE POLICY reader_tenant ON orders.order_transitions FOR SELECT TO conveyor_readonly
    USING (order_id IN (SELECT r.order_id FROM orders.order_registry r
                        WHERE r.tenant_id = current_setting('conveyor.tenant', true)));
CREATE POLICY worker_all ON orders.orders TO conveyor_worker USING (true) WITH CHECK (true);
CREATE POLICY worker_all ON orders.order_transitions TO conveyor_worker USING (true) WITH CHECK (true);
