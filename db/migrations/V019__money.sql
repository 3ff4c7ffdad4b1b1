-- Money (issue 18): currencies with their minor units, exchange rates, tax rules; every order's
-- net, tax and gross, and its total in the tenant's base currency at the rate of the order's day.
--
-- Expand only: new tables, and nullable columns (or a constant default) on existing ones, so
-- the release before this one keeps writing orders (its rows have no tax and no base total:
-- `fx_missing` stays false for them, their base total is NULL until `conveyor fx backfill`).
-- The rules are in docs/money.md; the currency list agrees with conveyor.schemas.money (tested).

-- 1. ISO 4217 currencies and their minor units (NULL: ISO's "N.A.", metals and fund codes) --
CREATE TABLE orders.currencies (
    code        char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    minor_units smallint CHECK (minor_units BETWEEN 0 AND 4)
);
INSERT INTO orders.currencies (code, minor_units) VALUES
    ('AED', 2), ('AFN', 2), ('ALL', 2), ('AMD', 2), ('ANG', 2), ('AOA', 2), ('ARS', 2), ('AUD', 2),
    ('AWG', 2), ('AZN', 2), ('BAM', 2), ('BBD', 2), ('BDT', 2), ('BGN', 2), ('BHD', 3), ('BIF', 0),
    ('BMD', 2), ('BND', 2), ('BOB', 2), ('BOV', 2), ('BRL', 2), ('BSD', 2), ('BTN', 2), ('BWP', 2),
    ('BYN', 2), ('BZD', 2), ('CAD', 2), ('CDF', 2), ('CHE', 2), ('CHF', 2), ('CHW', 2), ('CLF', 4),
    ('CLP', 0), ('CNY', 2), ('COP', 2), ('COU', 2), ('CRC', 2), ('CUC', 2), ('CUP', 2), ('CVE', 2),
    ('CZK', 2), ('DJF', 0), ('DKK', 2), ('DOP', 2), ('DZD', 2), ('EGP', 2), ('ERN', 2), ('ETB', 2),
    ('EUR', 2), ('FJD', 2), ('FKP', 2), ('GBP', 2), ('GEL', 2), ('GHS', 2), ('GIP', 2), ('GMD', 2),
    ('GNF', 0), ('GTQ', 2), ('GYD', 2), ('HKD', 2), ('HNL', 2), ('HTG', 2), ('HUF', 2), ('IDR', 2),
    ('ILS', 2), ('INR', 2), ('IQD', 3), ('IRR', 2), ('ISK', 0), ('JMD', 2), ('JOD', 3), ('JPY', 0),
    ('KES', 2), ('KGS', 2), ('KHR', 2), ('KMF', 0), ('KPW', 2), ('KRW', 0), ('KWD', 3), ('KYD', 2),
    ('KZT', 2), ('LAK', 2), ('LBP', 2), ('LKR', 2), ('LRD', 2), ('LSL', 2), ('LYD', 3), ('MAD', 2),
    ('MDL', 2), ('MGA', 2), ('MKD', 2), ('MMK', 2), ('MNT', 2), ('MOP', 2), ('MRU', 2), ('MUR', 2),
    ('MVR', 2), ('MWK', 2), ('MXN', 2), ('MXV', 2), ('MYR', 2), ('MZN', 2), ('NAD', 2), ('NGN', 2),
    ('NIO', 2), ('NOK', 2), ('NPR', 2), ('NZD', 2), ('OMR', 3), ('PAB', 2), ('PEN', 2), ('PGK', 2),
    ('PHP', 2), ('PKR', 2), ('PLN', 2), ('PYG', 0), ('QAR', 2), ('RON', 2), ('RSD', 2), ('RUB', 2),
    ('RWF', 0), ('SAR', 2), ('SBD', 2), ('SCR', 2), ('SDG', 2), ('SEK', 2), ('SGD', 2), ('SHP', 2),
    ('SLE', 2), ('SLL', 2), ('SOS', 2), ('SRD', 2), ('SSP', 2), ('STN', 2), ('SVC', 2), ('SYP', 2),
    ('SZL', 2), ('THB', 2), ('TJS', 2), ('TMT', 2), ('TND', 3), ('TOP', 2), ('TRY', 2), ('TTD', 2),
    ('TWD', 2), ('TZS', 2), ('UAH', 2), ('UGX', 0), ('USD', 2), ('USN', 2), ('UYI', 0), ('UYU', 2),
    ('UYW', 4), ('UZS', 2), ('VED', 2), ('VES', 2), ('VND', 0), ('VUV', 0), ('WST', 2), ('XAF', 0),
    ('XAG', NULL), ('XAU', NULL), ('XBA', NULL), ('XBB', NULL), ('XBC', NULL), ('XBD', NULL), ('XCD', 2), ('XCG', 2),
    ('XDR', NULL), ('XOF', 0), ('XPD', NULL), ('XPF', 0), ('XPT', NULL), ('XSU', NULL), ('XTS', NULL), ('XUA', NULL),
    ('XXX', NULL), ('YER', 2), ('ZAR', 2), ('ZMW', 2), ('ZWG', 2);

-- 2. Exchange rates: 1 `from_currency` = `rate` `to_currency`, for UTC days [valid_from, valid_to) -
CREATE TABLE orders.fx_rates (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_currency  char(3) NOT NULL REFERENCES orders.currencies (code),
    to_currency    char(3) NOT NULL REFERENCES orders.currencies (code),
    rate           numeric(30, 12) NOT NULL CHECK (rate > 0),
    valid_from     date NOT NULL,
    valid_to       date,   -- exclusive; NULL: until a later rate for the pair is loaded
    source         text NOT NULL CHECK (source <> '' AND length(source) <= 200),
    loaded_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (from_currency <> to_currency),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX fx_rates_pair_idx ON orders.fx_rates (from_currency, to_currency, valid_from DESC);

-- 3. Tenants: base currency and price model ----------------------------------------------------
ALTER TABLE inventory.tenants
    ADD COLUMN base_currency char(3) NOT NULL DEFAULT 'EUR' REFERENCES orders.currencies (code),
    ADD COLUMN prices_include_tax boolean NOT NULL DEFAULT false;
ALTER TABLE inventory.products ADD COLUMN tax_category text
    CHECK (tax_category ~ '^[a-z0-9_.-]{1,64}$');

-- 4. Tax rules per tenant: jurisdiction (`DE`, `US-CA`), product category, percent, UTC days ---
CREATE TABLE inventory.tax_rules (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES inventory.tenants (tenant_id),
    jurisdiction  text NOT NULL CHECK (jurisdiction ~ '^[A-Z]{2}(-[A-Z0-9]{1,3})?$'),
    category      text NOT NULL CHECK (category ~ '^[a-z0-9_.-]{1,64}$'),
    rate_percent  numeric(9, 6) NOT NULL CHECK (rate_percent >= 0 AND rate_percent <= 100),
    valid_from    date NOT NULL,
    valid_to      date,
    source        text NOT NULL DEFAULT '',
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX tax_rules_lookup_idx ON inventory.tax_rules (tenant_id, jurisdiction, category, valid_from DESC);

-- 5. What each order and line was charged ------------------------------------------------------
ALTER TABLE orders.orders
    ADD COLUMN net_total numeric(28, 4),
    ADD COLUMN tax_total numeric(28, 4),
    ADD COLUMN tax_jurisdiction text,
    ADD COLUMN base_currency char(3),
    ADD COLUMN base_total numeric(28, 4),
    ADD COLUMN fx_rate numeric(30, 12),
    ADD COLUMN fx_rate_id bigint,
    ADD COLUMN fx_missing boolean NOT NULL DEFAULT false;
CREATE INDEX orders_fx_missing_idx ON orders.orders (created_at) WHERE fx_missing;
ALTER TABLE orders.order_lines
    ADD COLUMN tax_category text,
    ADD COLUMN tax_rate numeric(9, 6),
    ADD COLUMN tax_amount numeric(28, 4);

-- 6. Summaries in the base currency --------------------------------------------------------------
ALTER TABLE orders.daily_summaries
    ADD COLUMN base_currency char(3),
    ADD COLUMN base_amount numeric(38, 4),
    ADD COLUMN unconverted bigint NOT NULL DEFAULT 0,
    ADD COLUMN tax_amount numeric(38, 4);

CREATE OR REPLACE FUNCTION maintenance.conveyor_refresh_summaries(since date) RETURNS bigint
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
    INSERT INTO orders.daily_summaries (tenant_id, day, status, currency, orders, amount,
                                        base_currency, base_amount, unconverted, tax_amount)
    SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date, status, currency, count(*), sum(total),
           max(base_currency), sum(base_total), count(*) FILTER (WHERE base_total IS NULL), sum(tax_total)
    FROM orders.orders WHERE created_at >= lower_bound
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, day, status, currency) DO UPDATE
        SET orders = excluded.orders, amount = excluded.amount, base_currency = excluded.base_currency,
            base_amount = excluded.base_amount, unconverted = excluded.unconverted,
            tax_amount = excluded.tax_amount, refreshed_at = now();
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

COMMENT ON TABLE orders.currencies IS 'ISO 4217 currencies and their minor units (conveyor.schemas.money agrees)';
COMMENT ON TABLE orders.fx_rates IS 'exchange rates per UTC day range, loaded by conveyor fx load; ranges of a pair never overlap';
COMMENT ON TABLE inventory.tax_rules IS 'tax rates per tenant, jurisdiction and product category, per UTC day range (conveyor tax load)';
COMMENT ON COLUMN orders.orders.base_total IS 'the total in the tenant''s base currency at fx_rate; NULL while fx_missing';
COMMENT ON COLUMN orders.orders.fx_missing IS 'no rate for the order''s day when it was recorded: completed by conveyor fx backfill';

-- 7. Privileges: the intake reads the tenant's money settings, rates, rules and categories -------
REVOKE ALL ON orders.currencies, orders.fx_rates, inventory.tax_rules FROM PUBLIC;
GRANT SELECT (tenant_id, base_currency, prices_include_tax) ON inventory.tenants TO conveyor_worker;
GRANT SELECT (tenant_id, sku, tax_category) ON inventory.products TO conveyor_worker;
GRANT SELECT ON orders.fx_rates, inventory.tax_rules TO conveyor_worker;
GRANT SELECT ON orders.currencies, orders.fx_rates TO conveyor_readonly;
GRANT SELECT ON inventory.tax_rules TO conveyor_readonly;
ALTER TABLE inventory.tax_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_tenant ON inventory.tax_rules FOR SELECT TO conveyor_readonly
    USING (tenant_id = current_setting('conveyor.tenant', true));
CREATE POLICY worker_all ON inventory.tax_rules TO conveyor_worker USING (true) WITH CHECK (true);
