-- Stock levels as append-only versions (docs/performance.md, "stock levels under a pinned xmin").
--
-- Until now every reservation UPDATEd its SKU's row in `stock_levels`, and the ledger
-- trigger copied the new level into `stock_movements`. An UPDATE leaves the old row version
-- behind until no snapshot can see it: while any transaction holds the xmin horizon back (a
-- report, a pg_dump, a forgotten BEGIN) neither page pruning nor VACUUM can remove one, and
-- every lookup of a SKU walks all of its versions (200,000 orders: 583,066 dead versions,
-- 77 MB for 1,000 live rows, throughput down to a quarter).
--
-- The ledger already held every version of every level. It becomes the truth:
--   * `stock_movements` takes one row per change (version + 1, the deltas, the new levels, the
--     cause); the newest version of a (tenant, SKU) IS its level. Rows are only ever inserted:
--     nothing is left for VACUUM, and the newest row is the first entry of a backward scan of
--     (tenant_id, sku, version), however many versions came before it.
--   * The CHECKs that refused oversell move with the levels onto every ledger row, and the
--     unique (tenant_id, sku, version) lets only one writer create each version: a writer
--     that raced another one (without the stock lock) fails instead of overwriting it.
--   * `stock_items` (the old table, renamed) says which SKUs have a level: its key, its
--     product, its row-level security. It changes only when a SKU gets its first stock.
--   * `stock_levels` is a view of the newest version per item, so reads are unchanged, and
--     hand-written SQL still works: an UPDATE of the view appends a version with the change's
--     deltas (applied to the newest committed version, retried if a worker got there first),
--     an INSERT creates the item and its version 1 (cause 'direct-sql' unless last_cause is
--     set); a DELETE is refused.
--   * The partner rows (`stock.changed`, V003/V007) are written by a statement-level trigger
--     on the ledger's inserts, one INSERT per statement as before.

-- 1. The ledger catches up with any level it missed (a change made with triggers off).
INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause)
SELECT s.tenant_id, s.sku, greatest(s.version, coalesce(m.version, 0) + 1),
       s.on_hand - coalesce(m.on_hand, 0), s.reserved - coalesce(m.reserved, 0),
       s.on_hand, s.reserved, 'migration-V011'
FROM stock_levels s
LEFT JOIN LATERAL (SELECT version, on_hand, reserved FROM stock_movements l
                   WHERE l.tenant_id = s.tenant_id AND l.sku = s.sku
                   ORDER BY version DESC LIMIT 1) m ON true
WHERE m.version IS NULL OR (m.version, m.on_hand, m.reserved) IS DISTINCT FROM (s.version, s.on_hand, s.reserved);

-- 2. The old table keeps only the keys.
DROP TRIGGER stock_levels_version ON stock_levels;
DROP TRIGGER stock_levels_changes_on_update ON stock_levels;
DROP TRIGGER stock_levels_changes_on_insert ON stock_levels;
DROP FUNCTION conveyor_stock_version();
ALTER TABLE stock_levels RENAME TO stock_items;
ALTER INDEX stock_levels_pkey RENAME TO stock_items_pkey;
ALTER TABLE stock_items DROP COLUMN on_hand, DROP COLUMN reserved, DROP COLUMN version,
                        DROP COLUMN updated_at, DROP COLUMN last_cause;
ALTER TABLE stock_items RESET (fillfactor, autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
REVOKE UPDATE ON stock_items FROM conveyor_worker;

-- 3. The levels' rules on every version. NOT VALID: the rows already there were copied from
-- levels that kept them; only new rows need the check, and a large ledger is not rescanned.
ALTER TABLE stock_movements
    ADD CONSTRAINT stock_on_hand_not_negative CHECK (on_hand >= 0) NOT VALID,
    ADD CONSTRAINT stock_reserved_not_negative CHECK (reserved >= 0) NOT VALID,
    ADD CONSTRAINT stock_reserved_within_on_hand CHECK (reserved <= on_hand) NOT VALID,
    ADD CONSTRAINT stock_version_positive CHECK (version >= 1) NOT VALID;
-- Inserted once, never updated: room on the page is wasted; autovacuum only needs to freeze.
ALTER TABLE stock_movements SET (autovacuum_vacuum_insert_scale_factor = 0.2);

-- 4. The level of each item: its newest version.
CREATE VIEW stock_levels WITH (security_invoker = true) AS
SELECT i.tenant_id, i.sku, v.on_hand, v.reserved, v.version, v.occurred_at AS updated_at, v.cause AS last_cause
FROM stock_items i
CROSS JOIN LATERAL (SELECT m.on_hand, m.reserved, m.version, m.occurred_at, m.cause
                    FROM stock_movements m
                    WHERE m.tenant_id = i.tenant_id AND m.sku = i.sku
                    ORDER BY m.version DESC LIMIT 1) v;
ALTER VIEW stock_levels ALTER COLUMN reserved SET DEFAULT 0;

-- Hand-written SQL on the view. An UPDATE's deltas are applied to the newest committed
-- version (READ COMMITTED: each query here sees what committed before it), so a relative
-- change (`on_hand = on_hand + 5`) racing a worker is neither lost nor refused; the unique
-- version makes a lost race an error, caught and tried again on the new newest version.
CREATE FUNCTION conveyor_stock_levels_write() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest record;
    delta_on_hand integer;
    delta_reserved integer;
    attempts integer := 0;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'stock_levels: a level is never deleted (its history is the ledger); set on hand to 0'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO stock_items (tenant_id, sku) VALUES (NEW.tenant_id, NEW.sku);
        INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                     on_hand, reserved, cause)
        VALUES (NEW.tenant_id, NEW.sku, 1, NEW.on_hand, coalesce(NEW.reserved, 0), NEW.on_hand,
                coalesce(NEW.reserved, 0), coalesce(NEW.last_cause, 'direct-sql'));
        NEW.version := 1;
        RETURN NEW;
    END IF;
    IF (NEW.tenant_id, NEW.sku) IS DISTINCT FROM (OLD.tenant_id, OLD.sku)
       OR NEW.version IS DISTINCT FROM OLD.version THEN
        RAISE EXCEPTION 'stock_levels: the key and the version of a level cannot be set'
            USING ERRCODE = 'check_violation';
    END IF;
    delta_on_hand := NEW.on_hand - OLD.on_hand;
    delta_reserved := NEW.reserved - OLD.reserved;
    IF delta_on_hand = 0 AND delta_reserved = 0 THEN
        RETURN NEW;  -- nothing about the stock changed: no version
    END IF;
    LOOP
        SELECT m.version, m.on_hand, m.reserved INTO newest FROM stock_movements m
        WHERE m.tenant_id = OLD.tenant_id AND m.sku = OLD.sku ORDER BY m.version DESC LIMIT 1;
        BEGIN
            INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                         on_hand, reserved, cause)
            VALUES (OLD.tenant_id, OLD.sku, newest.version + 1, delta_on_hand, delta_reserved,
                    newest.on_hand + delta_on_hand, newest.reserved + delta_reserved,
                    CASE WHEN NEW.last_cause IS DISTINCT FROM OLD.last_cause THEN NEW.last_cause
                         ELSE 'direct-sql' END);
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            attempts := attempts + 1;
            IF attempts >= 20 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    NEW.version := newest.version + 1;
    NEW.on_hand := newest.on_hand + delta_on_hand;
    NEW.reserved := newest.reserved + delta_reserved;
    RETURN NEW;
END;
$$;

CREATE TRIGGER stock_levels_write INSTEAD OF INSERT OR UPDATE OR DELETE ON stock_levels
    FOR EACH ROW EXECUTE FUNCTION conveyor_stock_levels_write();

-- 5. The partner rows, from the ledger's inserts: one INSERT per statement (V007), the slot
-- read once (V009), one NOTIFY per transaction. A version with no delta (none is written by
-- Conveyor) is no change for partners.
CREATE OR REPLACE FUNCTION conveyor_stock_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
    current_slot smallint := conveyor_outbox_slot();
BEGIN
    INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload, slot)
    SELECT gen_random_uuid(), 'inventory', k.key, 'stock.changed', k.key,
           conveyor_stock_changed_payload(c.tenant_id, c.sku, c.version, c.on_hand, c.reserved, c.cause),
           current_slot
    FROM changed_rows c, LATERAL (SELECT conveyor_stock_routing_key(c.tenant_id, c.sku) AS key) k
    WHERE c.delta_on_hand <> 0 OR c.delta_reserved <> 0 OR c.version = 1;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written > 0 AND current_setting('conveyor.outbox_notified', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('conveyor_outbox', '');
        PERFORM set_config('conveyor.outbox_notified', 'on', true);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER stock_movements_changes AFTER INSERT ON stock_movements
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION conveyor_stock_changes();

-- 6. Privileges. The worker reads the newest versions and appends new ones; it still may
-- not change or delete one, nor create an item (an operator's `conveyor stock set` does).
-- The reader sees levels through the view, its tenant only (RLS of both tables applies,
-- security_invoker).
REVOKE ALL ON stock_levels FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION conveyor_stock_levels_write() FROM PUBLIC;
GRANT SELECT ON stock_levels TO conveyor_worker, conveyor_readonly;
GRANT SELECT ON stock_items TO conveyor_worker, conveyor_readonly;
GRANT SELECT, INSERT ON stock_movements TO conveyor_worker;
