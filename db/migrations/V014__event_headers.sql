-- Causation and trace context on every event Conveyor publishes (docs/contracts.md).
--
-- An outbox row keeps the AMQP headers its event goes out with: `x-conveyor-causation-id`
-- (the message_id of the consumed message that caused the event) and the W3C trace context
-- (`traceparent`, `tracestate`) of that message, when it had one. The relay publishes them.
-- Rows written by hand-written SQL or by the expirer (no consumed message) carry none.
ALTER TABLE messaging.outbox ADD COLUMN headers jsonb;
COMMENT ON COLUMN messaging.outbox.headers IS 'AMQP headers of the event: causation id, traceparent, tracestate';

-- The headers of the transaction's consumed message, as the worker set them with
-- set_config('conveyor.causation_id' | 'conveyor.traceparent' | 'conveyor.tracestate', ..., true);
-- NULL outside a worker's transaction.
CREATE FUNCTION messaging.conveyor_event_headers() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT nullif(jsonb_strip_nulls(jsonb_build_object(
        'x-conveyor-causation-id', nullif(current_setting('conveyor.causation_id', true), ''),
        'traceparent', nullif(current_setting('conveyor.traceparent', true), ''),
        'tracestate', nullif(current_setting('conveyor.tracestate', true), ''))), '{}'::jsonb)
$$;
REVOKE ALL ON FUNCTION messaging.conveyor_event_headers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION messaging.conveyor_event_headers() TO conveyor_worker;

-- The partner rows (V011's trigger) with the headers of the message that moved the stock: for a
-- batch of orders, its first message (the payload's `cause` names the first order and how many more).
CREATE OR REPLACE FUNCTION inventory.conveyor_stock_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
    current_slot smallint := conveyor_outbox_slot();
    event_headers jsonb := messaging.conveyor_event_headers();
BEGIN
    INSERT INTO outbox (message_id, exchange, routing_key, message_type, ordering_key, payload, slot, headers)
    SELECT gen_random_uuid(), 'inventory', k.key, 'stock.changed', k.key,
           conveyor_stock_changed_payload(c.tenant_id, c.sku, c.version, c.on_hand, c.reserved, c.cause),
           current_slot, event_headers
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
