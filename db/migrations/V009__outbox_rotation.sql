-- An outbox that does not depend on VACUUM (docs/performance.md, "churn").
--
-- Every event is inserted once and deleted once the broker confirmed it: ~4 dead rows per
-- order. Only VACUUM reclaims them, and while one long transaction (a report, a pg_dump's
-- snapshot) holds the xmin horizon back, not even VACUUM can: the relay's claim, which
-- walks the outbox in id order, then walks every dead row too, and the longer it lasts
-- the slower it gets.
--
-- So the outbox rotates through three partitions (as PgQ does with its event tables).
-- Writers insert into the *current* slot (outbox_rotation.slot). The relay's leader moves
-- the current slot on once it took `rotate_after` rows, and TRUNCATEs every other slot
-- that is drained: TRUNCATE gives the space back at once, whatever the xmin horizon. The
-- claim then walks at most one slot's worth of dead rows.
--
-- Why this is safe: the relay claims from all three slots in id order, so a row that lands
-- in an old slot late (its transaction read the slot just before a rotation) is still
-- published in order; and a slot is truncated only under ACCESS EXCLUSIVE (NOWAIT), which
-- no transaction still holding uncommitted rows in it would let us take, after checking it
-- is empty. A slot that cannot be truncated yet (a pg_dump holds a lock on it) is tried
-- again later, and rotation waits for an empty slot: the outbox then behaves as before.

CREATE TABLE outbox_rotation (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    slot         smallint NOT NULL CHECK (slot BETWEEN 0 AND 2),
    first_id     bigint NOT NULL,             -- outbox_id_seq when the slot became current
    rotated_at   timestamptz NOT NULL DEFAULT now(),
    rotations    bigint NOT NULL DEFAULT 0,
    truncations  bigint NOT NULL DEFAULT 0
);
INSERT INTO outbox_rotation (slot, first_id) SELECT 0, last_value FROM outbox_id_seq;

-- The slot a writer inserts into. Hot paths (the intake, the stock trigger) read it once
-- per statement instead of once per row.
CREATE FUNCTION conveyor_outbox_slot() RETURNS smallint
LANGUAGE sql STABLE AS $$ SELECT slot FROM outbox_rotation $$;

-- The old table's pending rows move over; rows an old relay marked sent (before V003 it
-- kept them an hour) are history and are dropped. The sequence keeps counting.
ALTER SEQUENCE outbox_id_seq OWNED BY NONE;
ALTER TABLE outbox RENAME TO outbox_before_v009;
ALTER INDEX outbox_pkey RENAME TO outbox_before_v009_pkey;
ALTER INDEX outbox_message_id_key RENAME TO outbox_before_v009_message_id_key;
DROP INDEX outbox_pending_idx;

-- No partial "pending" index: sent rows are deleted, so every row is pending, and the
-- primary key's index gives the claim its id order (a merge of the three slots).
CREATE TABLE outbox (
    id              bigint NOT NULL DEFAULT nextval('outbox_id_seq'),
    message_id      uuid NOT NULL,
    exchange        text NOT NULL,
    routing_key     text NOT NULL,
    correlation_id  text,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    ordering_key    text,
    message_type    text,
    slot            smallint NOT NULL DEFAULT conveyor_outbox_slot(),
    PRIMARY KEY (id, slot),
    UNIQUE (message_id, slot)
) PARTITION BY LIST (slot);
CREATE TABLE outbox_slot_0 PARTITION OF outbox FOR VALUES IN (0);
CREATE TABLE outbox_slot_1 PARTITION OF outbox FOR VALUES IN (1);
CREATE TABLE outbox_slot_2 PARTITION OF outbox FOR VALUES IN (2);
ALTER SEQUENCE outbox_id_seq OWNED BY outbox.id;

INSERT INTO outbox (id, message_id, exchange, routing_key, correlation_id, payload, created_at,
                    ordering_key, message_type, slot)
SELECT id, message_id, exchange, routing_key, correlation_id, payload, created_at, ordering_key,
       message_type, 0
FROM outbox_before_v009 WHERE sent_at IS NULL;
DROP TABLE outbox_before_v009;

-- The stock trigger (V007) again, reading the slot once per statement.
CREATE OR REPLACE FUNCTION conveyor_stock_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
    current_slot smallint := conveyor_outbox_slot();
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
        INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload, slot)
        SELECT gen_random_uuid(), 'inventory', k.key, 'stock.changed', k.key,
               conveyor_stock_changed_payload(c.tenant_id, c.sku, c.version, c.on_hand, c.reserved, c.last_cause),
               current_slot
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
        INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload, slot)
        SELECT gen_random_uuid(), 'inventory', k.key, 'stock.changed', k.key,
               conveyor_stock_changed_payload(c.tenant_id, c.sku, c.version, c.on_hand, c.reserved, c.last_cause),
               current_slot
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

-- Truncate the drained slots writers left, then rotate when the current slot took
-- `rotate_after` rows and the next one is empty. Returns what it did: ('truncated', slot),
-- ('busy', slot) for a drained slot it could not lock yet, ('rotated', new slot).
-- SECURITY DEFINER, owned by conveyor_owner: the relay (conveyor_worker) may TRUNCATE
-- nothing itself, and may run this and nothing more. One caller at a time (advisory lock).
CREATE FUNCTION conveyor_outbox_rotate(rotate_after bigint)
RETURNS TABLE (action text, slot smallint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    state outbox_rotation%ROWTYPE;
    other smallint;
    part regclass;
    has_rows boolean;
    next_slot smallint;
    last_id bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(27988542918456692) THEN  -- 0x636F6E766F7574, "convout"
        RETURN;
    END IF;
    SELECT * INTO state FROM outbox_rotation;
    FOR other IN SELECT s FROM generate_series(0, 2) s WHERE s <> state.slot LOOP
        part := format('outbox_slot_%s', other)::regclass;
        CONTINUE WHEN pg_relation_size(part) = 0;  -- truncated already, nothing written since
        BEGIN
            -- Granted only when no transaction that wrote to the slot is still open.
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', part);
            EXECUTE format('SELECT EXISTS (SELECT FROM %s)', part) INTO has_rows;
            IF NOT has_rows THEN
                EXECUTE format('TRUNCATE %s', part);
                UPDATE outbox_rotation SET truncations = truncations + 1;
                action := 'truncated'; slot := other; RETURN NEXT;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            action := 'busy'; slot := other; RETURN NEXT;
        END;
    END LOOP;
    SELECT last_value INTO last_id FROM outbox_id_seq;
    next_slot := (state.slot + 1) % 3;
    IF last_id - state.first_id >= rotate_after
       AND pg_relation_size(format('outbox_slot_%s', next_slot)::regclass) = 0 THEN
        UPDATE outbox_rotation
        SET slot = next_slot, first_id = last_id, rotated_at = now(), rotations = rotations + 1;
        action := 'rotated'; slot := next_slot; RETURN NEXT;
    END IF;
END
$$;

-- The tables that take an UPDATE per message keep room on each page for the new row
-- versions, so the update stays on its page (HOT, no index entry) and page pruning, which
-- needs no VACUUM, can reclaim the old ones. stock_levels takes one update per order line;
-- relay_lease one per relay batch (a single row). Where autovacuum runs, these tables are
-- vacuumed after a fixed number of dead rows, not a fraction of a table that stays small.
ALTER TABLE stock_levels SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
                              autovacuum_vacuum_threshold = 2000);
ALTER TABLE relay_lease SET (fillfactor = 10, autovacuum_vacuum_scale_factor = 0,
                             autovacuum_vacuum_threshold = 1000);

ALTER FUNCTION conveyor_outbox_rotate(bigint) OWNER TO conveyor_owner;

-- Privileges as V005 set them for the old table, plus what writers need to find the slot.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO conveyor_worker;
GRANT SELECT ON outbox_rotation TO conveyor_worker;
REVOKE ALL ON FUNCTION conveyor_outbox_slot(), conveyor_outbox_rotate(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION conveyor_outbox_slot(), conveyor_outbox_rotate(bigint) TO conveyor_worker;
