-- Inventory changes for partners: every change of a stock level, whoever makes it (a
-- worker, `conveyor stock set`, hand-written SQL), writes one outbox row in the same
-- transaction; the relay publishes it on exchange `inventory`. And the relay's lease:
-- one active relay at a time, so the changes of a SKU go out in order.

-- Rows sharing an ordering key are published in id order, the next one only after the
-- broker confirmed the previous one; NULL means the row is ordered with nothing.
ALTER TABLE outbox ADD COLUMN ordering_key text;
-- The AMQP `type` property; NULL means the routing key (the order events' convention).
ALTER TABLE outbox ADD COLUMN message_type text;

-- One word of a topic routing key: letters, digits, '_' and '-' stay, every other
-- character becomes %XX per UTF-8 byte ('.' -> %2E, ' ' -> %20, '*' -> %2A, '#' -> %23),
-- so a SKU is always exactly one word. schemas/inventory.py has the same function.
CREATE FUNCTION conveyor_routing_word(word text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN word ~ '^[A-Za-z0-9_-]+$' THEN word ELSE (
        SELECT string_agg(
                   CASE WHEN c ~ '^[A-Za-z0-9_-]$' THEN c
                        ELSE upper(regexp_replace(encode(convert_to(c, 'UTF8'), 'hex'), '(..)', '%\1', 'g'))
                   END, '' ORDER BY i)
        FROM regexp_split_to_table(word, '') WITH ORDINALITY AS t(c, i))
    END
$$;

-- stock.changed.<tenant>.<sku>, both encoded; a key over AMQP's 255 bytes carries
-- '=' and 32 hex digits of the SKU's SHA-256 instead of the SKU.
CREATE FUNCTION conveyor_stock_routing_key(tenant text, sku text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(k.full_key) <= 255 THEN k.full_key
                ELSE k.prefix || '=' || left(encode(sha256(convert_to(sku, 'UTF8')), 'hex'), 32)
           END
    FROM (SELECT p.prefix, p.prefix || conveyor_routing_word(sku) AS full_key
          FROM (SELECT 'stock.changed.' || conveyor_routing_word(tenant) || '.' AS prefix) p) k
$$;

-- Runs after the version trigger (V002) decided whether anything changed. occurred_at is
-- the clock when the row was written, after its row lock was granted, so it never goes
-- backwards within a SKU (now() would: it is when the transaction began).
CREATE FUNCTION conveyor_stock_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NULL;
    END IF;
    key := conveyor_stock_routing_key(NEW.tenant_id, NEW.sku);
    INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload)
    VALUES (gen_random_uuid(), 'inventory', key, 'stock.changed', key, jsonb_build_object(
        'sku', NEW.sku, 'tenant_id', NEW.tenant_id, 'on_hand', NEW.on_hand,
        'reserved', NEW.reserved, 'available', NEW.on_hand - NEW.reserved,
        'version', NEW.version,
        'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'cause', NEW.last_cause));
    -- One NOTIFY per transaction: it only wakes the relay, and every notifying commit
    -- takes a cluster-wide lock. The flag is transaction-local (set_config(..., true)).
    IF current_setting('conveyor.outbox_notified', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('conveyor_outbox', '');
        PERFORM set_config('conveyor.outbox_notified', 'on', true);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER stock_levels_outbox AFTER INSERT OR UPDATE ON stock_levels
    FOR EACH ROW EXECUTE FUNCTION conveyor_stock_outbox();

-- The relay's lease: the holder publishes, the others wait. Every publishing transaction
-- renews it with a conditional UPDATE and holds its row lock until it commits, so two
-- relays can never publish at the same time even when a lease expires mid-batch. No
-- session state: it works behind PgBouncer's transaction pooling.
CREATE TABLE relay_lease (
    name          text PRIMARY KEY,
    holder        text,
    acquired_at   timestamptz,
    renewed_at    timestamptz,
    expires_at    timestamptz,
    last_sent_at  timestamptz,
    sent_total    bigint NOT NULL DEFAULT 0 CHECK (sent_total >= 0)
);
INSERT INTO relay_lease (name) VALUES ('outbox');
