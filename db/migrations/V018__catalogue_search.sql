-- The catalogue (docs/catalogue.md): products gain a description and `attributes` (a JSON
-- object, GIN-indexed for containment), a weighted full-text vector over name, description and
-- a few attributes (brand, colour, material, category) in the tenant's text-search configuration,
-- and trigram indexes on name and SKU for typo-tolerant search (pg_trgm). The configuration is a
-- column of the tenant, copied onto each product (filled by a trigger when an insert leaves it
-- out, rewritten when the tenant's changes) so that the vector can be a stored generated column:
-- computed in C on every write, whoever writes. Adding it rewrites inventory.products once.

-- pg_trgm is a trusted extension: a role with CREATE on the database may create it. The
-- migrating role (conveyor_owner) normally has not; a superuser login (tests, development)
-- creates it as itself, otherwise a DBA must do it beforehand (docs/catalogue.md).
DO $$
DECLARE
    acting text := current_user;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_trgm') THEN
        RETURN;
    END IF;
    IF pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') THEN
        CREATE EXTENSION pg_trgm SCHEMA public;
    ELSIF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) THEN
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', session_user);
        CREATE EXTENSION pg_trgm SCHEMA public;
        EXECUTE pg_catalog.format('SET LOCAL ROLE %I', acting);
    ELSE
        RAISE EXCEPTION 'the catalogue needs the extension pg_trgm, which % may not create', acting
            USING HINT = 'as a superuser, in this database: CREATE EXTENSION pg_trgm SCHEMA public; '
                         '(or GRANT CREATE ON DATABASE to conveyor_owner), then migrate again';
    END IF;
END
$$;

ALTER TABLE inventory.tenants
    ADD COLUMN text_search_config regconfig NOT NULL DEFAULT 'pg_catalog.english';
COMMENT ON COLUMN inventory.tenants.text_search_config IS
    'text-search configuration of the tenant''s catalogue (stemming, stop words); copied onto its products';

ALTER TABLE inventory.products
    ADD COLUMN description text NOT NULL DEFAULT '',
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    ADD COLUMN text_search_config regconfig,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The weighted vector: name A, brand and category B, the other searched attributes C,
-- description D. to_tsvector(regconfig, text) is immutable, so it may be generated.
ALTER TABLE inventory.products
    ADD COLUMN search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector(coalesce(text_search_config, 'pg_catalog.simple'::regconfig), name), 'A') ||
        setweight(to_tsvector(coalesce(text_search_config, 'pg_catalog.simple'::regconfig),
                              coalesce(attributes ->> 'brand', '') || ' ' || coalesce(attributes ->> 'category', '')), 'B') ||
        setweight(to_tsvector(coalesce(text_search_config, 'pg_catalog.simple'::regconfig),
                              coalesce(attributes ->> 'colour', '') || ' ' || coalesce(attributes ->> 'color', '') || ' ' ||
                              coalesce(attributes ->> 'material', '')), 'C') ||
        setweight(to_tsvector(coalesce(text_search_config, 'pg_catalog.simple'::regconfig), description), 'D')
    ) STORED;

COMMENT ON COLUMN inventory.products.attributes IS 'free-form JSON object (brand, colour, size, ...); GIN jsonb_path_ops for @>';
COMMENT ON COLUMN inventory.products.text_search_config IS 'the tenant''s text-search configuration when the row was written (trigger)';
COMMENT ON COLUMN inventory.products.search IS 'weighted full-text vector: name A, brand/category B, colour/material C, description D';

-- An insert that does not say which configuration (conveyor stock set, an intake, hand-written
-- SQL) gets the tenant's. The WHEN clause is evaluated without calling the function, so the
-- catalogue import, which sets it, pays nothing per row.
CREATE FUNCTION inventory.conveyor_product_search_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT t.text_search_config INTO NEW.text_search_config
    FROM inventory.tenants t WHERE t.tenant_id = NEW.tenant_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER products_search_config BEFORE INSERT OR UPDATE ON inventory.products
    FOR EACH ROW WHEN (NEW.text_search_config IS NULL)
    EXECUTE FUNCTION inventory.conveyor_product_search_config();

CREATE FUNCTION inventory.conveyor_tenant_search_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE inventory.products SET text_search_config = NEW.text_search_config
    WHERE tenant_id = NEW.tenant_id AND text_search_config IS DISTINCT FROM NEW.text_search_config;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tenants_search_config AFTER UPDATE OF text_search_config ON inventory.tenants
    FOR EACH ROW WHEN (OLD.text_search_config IS DISTINCT FROM NEW.text_search_config)
    EXECUTE FUNCTION inventory.conveyor_tenant_search_config();

-- Existing rows take their tenant's configuration (the vector follows).
UPDATE inventory.products p SET text_search_config = t.text_search_config
FROM inventory.tenants t WHERE t.tenant_id = p.tenant_id;

CREATE INDEX products_attributes_idx ON inventory.products USING gin (attributes jsonb_path_ops);
CREATE INDEX products_search_idx ON inventory.products USING gin (search);
CREATE INDEX products_name_trgm_idx ON inventory.products USING gin (name public.gin_trgm_ops);
CREATE INDEX products_sku_trgm_idx ON inventory.products USING gin (sku public.gin_trgm_ops);

-- The words of each tenant's product names, brands and categories, trigram-indexed: a query
-- word with a typo is replaced by its nearest catalogue words before the full-text search, so
-- the search stays on the GIN index of `search` (a trigram scan of a million names is not).
-- Filled by `conveyor catalog import`; a word no product has any more only widens a query.
CREATE TABLE inventory.catalogue_words (
    tenant_id  text NOT NULL REFERENCES inventory.tenants (tenant_id),
    word       text NOT NULL CHECK (word <> '' AND length(word) <= 64),
    PRIMARY KEY (tenant_id, word)
);
CREATE INDEX catalogue_words_trgm_idx ON inventory.catalogue_words USING gin (word public.gin_trgm_ops);
COMMENT ON TABLE inventory.catalogue_words IS 'the words of the catalogue per tenant (names, brands, categories): typo correction for search';
