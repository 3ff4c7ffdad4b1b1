-- Every stock change still writes its ledger row (V002) and its partner outbox row (V003),
-- whoever makes it; what changes is how. The row-level triggers called PL/pgSQL and ran
-- two single-row INSERTs per changed row: for a batch that reserves 60 SKUs, 120 executor
-- starts, ~6 ms of the batch's ~11 ms statement (EXPLAIN ANALYZE, docs/performance.md).
-- Statement-level triggers with transition tables write the same rows with one INSERT
-- each per statement. The BEFORE ROW trigger (V002) still numbers versions and sets
-- the cause, so the rows are the same as before, column for column.
DROP TRIGGER stock_levels_ledger ON stock_levels;
DROP TRIGGER stock_levels_outbox ON stock_levels;

-- The partner's message (schemas/inventory.py, StockChanged), as V003 built it. A plain
-- SQL function: PostgreSQL inlines it into the INSERT below (no call per row).
CREATE FUNCTION conveyor_stock_changed_payload(tenant text, sku text, version bigint, on_hand integer,
                                               reserved integer, cause text) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object(
        'sku', sku, 'tenant_id', tenant, 'on_hand', on_hand, 'reserved', reserved,
        'available', on_hand - reserved, 'version', version,
        'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'cause', cause)
$$;

-- `changed_rows` / `previous_rows` are the statement's transition tables. A row whose
-- version did not move (an UPDATE that changed nothing about the stock) is no change. A
-- row without a previous one is new: an INSERT, or a hand-written UPDATE of the key
-- itself; its deltas are its whole levels. occurred_at is the clock when the row is
-- written, after every row lock of the statement was granted, so it never goes backwards
-- within a SKU; one NOTIFY per transaction wakes the relay. (Two branches because an
-- INSERT trigger has no `previous_rows`, and a query cannot name a table that may not exist.)
CREATE FUNCTION conveyor_stock_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        WITH changed AS MATERIALIZED (
            SELECT n.tenant_id, n.sku, n.version, n.on_hand, n.reserved, n.last_cause,
                   n.on_hand - coalesce(o.on_hand, 0) AS delta_on_hand,
                   n.reserved - coalesce(o.reserved, 0) AS delta_reserved
            FROM changed_rows n LEFT JOIN previous_rows o USING (tenant_id, sku)
            WHERE o.version IS DISTINCT FROM n.version
        ), ledger AS (
            INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                         on_hand, reserved, cause)
            SELECT tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, last_cause
            FROM changed
        )
        INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload)
        SELECT gen_random_uuid(), 'inventory', k.key, 'stock.changed', k.key,
               conveyor_stock_changed_payload(c.tenant_id, c.sku, c.version, c.on_hand, c.reserved, c.last_cause)
        FROM changed c, LATERAL (SELECT conveyor_stock_routing_key(c.tenant_id, c.sku) AS key) k;
    ELSE
        WITH changed AS MATERIALIZED (
            SELECT tenant_id, sku, version, on_hand, reserved, last_cause FROM changed_rows
        ), ledger AS (
            INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                         on_hand, reserved, cause)
            SELECT tenant_id, sku, version, on_hand, reserved, on_hand, reserved, last_cause
            FROM changed
        )
        INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload)
        SELECT gen_random_uuid(), 'inventory', k.key, 'stock.changed', k.key,
               conveyor_stock_changed_payload(c.tenant_id, c.sku, c.version, c.on_hand, c.reserved, c.last_cause)
        FROM changed c, LATERAL (SELECT conveyor_stock_routing_key(c.tenant_id, c.sku) AS key) k;
    END IF;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 AND current_setting('conveyor.outbox_notified', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('conveyor_outbox', '');
        PERFORM set_config('conveyor.outbox_notified', 'on', true);
    END IF;
    RETURN NULL;
END;
$$;

-- Transition tables allow one event per trigger: one for UPDATE, one for INSERT.
CREATE TRIGGER stock_levels_changes_on_update AFTER UPDATE ON stock_levels
    REFERENCING OLD TABLE AS previous_rows NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_stock_changes();
CREATE TRIGGER stock_levels_changes_on_insert AFTER INSERT ON stock_levels
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_stock_changes();

DROP FUNCTION conveyor_stock_ledger();
DROP FUNCTION conveyor_stock_outbox();

-- As V005 did for every function: nothing for PUBLIC; the worker needs EXECUTE on what the
-- trigger calls (a trigger function itself fires without it).
REVOKE EXECUTE ON FUNCTION conveyor_stock_changes(), conveyor_stock_changed_payload(text, text, bigint, integer, integer, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor_stock_changed_payload(text, text, bigint, integer, integer, text) TO conveyor_worker;
