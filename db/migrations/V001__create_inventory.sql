-- Schema v1: tenants, catalogue, stock, orders (partitioned by month), reservations,
-- inbox (processed message ids) and outbox (events waiting to be published).

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (tenant_id <> '' AND length(tenant_id) <= 64),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (tenant_id, name) VALUES ('default', 'Default tenant');

CREATE TABLE products (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    sku         text NOT NULL CHECK (sku <> '' AND length(sku) <= 128),
    name        text NOT NULL DEFAULT '',
    price       numeric(28, 4) NOT NULL DEFAULT 0 CHECK (price >= 0),
    currency    char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, sku)
);

-- The database, not only the code, refuses oversell: every change must keep
-- 0 <= reserved <= on_hand.
CREATE TABLE stock_levels (
    tenant_id   text NOT NULL,
    sku         text NOT NULL,
    on_hand     integer NOT NULL CHECK (on_hand >= 0),
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    version     bigint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, sku),
    FOREIGN KEY (tenant_id, sku) REFERENCES products (tenant_id, sku),
    CONSTRAINT stock_reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- Global uniqueness of an order id (the partitioned table cannot enforce it, because
-- its keys must include the partition column) and the route to the order's partition.
CREATE TABLE order_registry (
    order_id    uuid PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    placed_at   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
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
    PRIMARY KEY (order_id, placed_at)
) PARTITION BY RANGE (placed_at);

CREATE TABLE orders_default PARTITION OF orders DEFAULT;

-- Lookups by status and age (the expirer, reports).
CREATE INDEX orders_status_updated_idx ON orders (status, updated_at);

CREATE TABLE order_lines (
    order_id    uuid NOT NULL REFERENCES order_registry (order_id),
    line_no     integer NOT NULL CHECK (line_no >= 1),
    sku         text NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(28, 4) NOT NULL CHECK (unit_price >= 0),
    status      text NOT NULL CHECK (status IN ('RESERVED', 'REJECTED')),
    reason      text,
    PRIMARY KEY (order_id, line_no)
);

-- One reservation per (order, SKU): the key makes a doubled reservation an error.
CREATE TABLE reservations (
    order_id    uuid NOT NULL REFERENCES order_registry (order_id),
    tenant_id   text NOT NULL,
    sku         text NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    state       text NOT NULL DEFAULT 'HELD' CHECK (state IN ('HELD', 'RELEASED', 'COMMITTED')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    settled_at  timestamptz,
    PRIMARY KEY (order_id, tenant_id, sku),
    FOREIGN KEY (tenant_id, sku) REFERENCES stock_levels (tenant_id, sku)
);
CREATE INDEX reservations_held_by_sku_idx ON reservations (tenant_id, sku) WHERE state = 'HELD';

-- Processed message ids: a redelivered or republished message is recognised here.
CREATE TABLE inbox (
    message_id    text PRIMARY KEY CHECK (length(message_id) BETWEEN 1 AND 255),
    handler       text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);

-- Events written in the same transaction as the change they describe; a relay
-- publishes them with confirms and marks them sent.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    message_id      uuid NOT NULL UNIQUE,
    exchange        text NOT NULL,
    routing_key     text NOT NULL,
    correlation_id  text,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE sent_at IS NULL;

-- Monthly partitions: conveyor_create_order_partitions(now(), 3) makes the partition of
-- the month holding `start_at` and the next `months_ahead` ones; existing ones are kept.
CREATE FUNCTION conveyor_create_order_partitions(start_at timestamptz, months_ahead integer)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    month_start date := date_trunc('month', start_at AT TIME ZONE 'UTC')::date;
    part_name   text;
    i           integer;
BEGIN
    FOR i IN 0 .. months_ahead LOOP
        part_name := format('orders_%s', to_char(month_start + make_interval(months => i), 'YYYY_MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF orders FOR VALUES FROM (%L) TO (%L)',
                part_name,
                (month_start + make_interval(months => i))::timestamp AT TIME ZONE 'UTC',
                (month_start + make_interval(months => i + 1))::timestamp AT TIME ZONE 'UTC');
            RETURN NEXT part_name;
        END IF;
    END LOOP;
END;
$$;

SELECT conveyor_create_order_partitions(now() - interval '1 month', 4);
