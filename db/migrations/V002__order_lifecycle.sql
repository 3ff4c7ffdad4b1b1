-- The order's whole life: payments, shipments, the transition log, and a stock ledger
-- that records every change of a stock level whoever made it.

-- Each stock change gets version + 1 and a cause. Code sets `last_cause` in the same
-- UPDATE; a change that leaves it untouched (hand-written SQL) is recorded as 'direct-sql'.
ALTER TABLE stock_levels ADD COLUMN last_cause text;

CREATE TABLE stock_movements (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL,
    sku             text NOT NULL,
    version         bigint NOT NULL,
    delta_on_hand   integer NOT NULL,
    delta_reserved  integer NOT NULL,
    on_hand         integer NOT NULL,
    reserved        integer NOT NULL,
    cause           text NOT NULL,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, sku, version)
);

CREATE FUNCTION conveyor_stock_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.on_hand IS NOT DISTINCT FROM OLD.on_hand
           AND NEW.reserved IS NOT DISTINCT FROM OLD.reserved THEN
            RETURN NEW;  -- nothing about the stock changed
        END IF;
        NEW.version := OLD.version + 1;
        IF NEW.last_cause IS NOT DISTINCT FROM OLD.last_cause THEN
            NEW.last_cause := 'direct-sql';
        END IF;
        NEW.updated_at := now();
    ELSE
        NEW.version := 1;
        NEW.last_cause := coalesce(NEW.last_cause, 'direct-sql');
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION conveyor_stock_ledger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NULL;
    END IF;
    INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved,
                                 on_hand, reserved, cause)
    VALUES (NEW.tenant_id, NEW.sku, NEW.version,
            NEW.on_hand - CASE WHEN TG_OP = 'UPDATE' THEN OLD.on_hand ELSE 0 END,
            NEW.reserved - CASE WHEN TG_OP = 'UPDATE' THEN OLD.reserved ELSE 0 END,
            NEW.on_hand, NEW.reserved, NEW.last_cause);
    RETURN NULL;
END;
$$;

CREATE TRIGGER stock_levels_version BEFORE INSERT OR UPDATE ON stock_levels
    FOR EACH ROW EXECUTE FUNCTION conveyor_stock_version();
CREATE TRIGGER stock_levels_ledger AFTER INSERT OR UPDATE ON stock_levels
    FOR EACH ROW EXECUTE FUNCTION conveyor_stock_ledger();

-- Levels that existed before the ledger start it with their current values.
INSERT INTO stock_movements (tenant_id, sku, version, delta_on_hand, delta_reserved, on_hand, reserved, cause)
SELECT tenant_id, sku, version, on_hand, reserved, on_hand, reserved, 'ledger-opening'
FROM stock_levels;

-- One row per payment id: a second message about the same payment has no effect.
CREATE TABLE payments (
    payment_id   text PRIMARY KEY CHECK (length(payment_id) BETWEEN 1 AND 128),
    order_id     uuid NOT NULL REFERENCES order_registry (order_id),
    outcome      text NOT NULL CHECK (outcome IN ('authorized', 'failed', 'refused')),
    amount       numeric(28, 4),
    currency     char(3),
    detail       text,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_order_idx ON payments (order_id);

-- One row per (shipment id, event).
CREATE TABLE shipments (
    shipment_id      text NOT NULL CHECK (length(shipment_id) BETWEEN 1 AND 128),
    event            text NOT NULL CHECK (event IN ('dispatched', 'delivered')),
    order_id         uuid NOT NULL REFERENCES order_registry (order_id),
    carrier          text,
    tracking_number  text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shipment_id, event)
);
CREATE INDEX shipments_order_idx ON shipments (order_id);

-- Every state change of every order, in order: who moved it, from what, to what, why.
CREATE TABLE order_transitions (
    id           bigserial PRIMARY KEY,
    order_id     uuid NOT NULL REFERENCES order_registry (order_id),
    from_status  text,
    to_status    text NOT NULL,
    event        text NOT NULL,
    message_id   text,
    reason       text,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_transitions_order_idx ON order_transitions (order_id, id);

-- The expirer's lookup: RESERVED orders by age.
CREATE INDEX orders_reserved_age_idx ON orders (updated_at) WHERE status = 'RESERVED';
