-- Expand/contract, step 1 of 3 (docs/deploy.md, "Expand/contract"): orders.shipments.tracking_number
-- becomes tracking_reference without stopping the workers: the new column, and a trigger that keeps both in step.
--
-- The release before this one writes tracking_number; this release writes tracking_reference
-- only. While both run side by side (a rolling deploy), a trigger keeps the two columns in
-- step whichever one the writer set, so every row is right for either release to read.
-- Short locks only: ADD COLUMN without a default is a catalog change (no table rewrite), and
-- the trigger's creation waits for no more than the writers' current statements.
-- Existing rows are copied by V016 (batched, outside a transaction); V017 (the contract step,
-- `conveyor db migrate --contract`) drops the trigger and the old column once no worker of
-- the previous release runs any more.
ALTER TABLE orders.shipments ADD COLUMN IF NOT EXISTS tracking_reference text;
COMMENT ON COLUMN orders.shipments.tracking_reference IS
    'the carrier''s reference of the parcel (the message''s tracking_number), dispatched rows only';

-- Whichever column the writer set fills the other. A row whose writer set both to different
-- values is refused: it cannot have two tracking references.
CREATE OR REPLACE FUNCTION orders.conveyor_shipments_tracking_sync() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    set_old boolean := NEW.tracking_number IS NOT NULL;
    set_new boolean := NEW.tracking_reference IS NOT NULL;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        set_old := NEW.tracking_number IS DISTINCT FROM OLD.tracking_number;
        set_new := NEW.tracking_reference IS DISTINCT FROM OLD.tracking_reference;
    END IF;
    IF set_old AND set_new AND NEW.tracking_number IS DISTINCT FROM NEW.tracking_reference THEN
        RAISE EXCEPTION 'shipment % (%): tracking_number % and tracking_reference % differ',
                        NEW.shipment_id, NEW.event, NEW.tracking_number, NEW.tracking_reference
            USING ERRCODE = 'check_violation';
    ELSIF set_new THEN
        NEW.tracking_number := NEW.tracking_reference;
    ELSIF set_old THEN
        NEW.tracking_reference := NEW.tracking_number;
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION orders.conveyor_shipments_tracking_sync() FROM PUBLIC;

DROP TRIGGER IF EXISTS shipments_tracking_sync ON orders.shipments;
CREATE TRIGGER shipments_tracking_sync
    BEFORE INSERT OR UPDATE OF tracking_number, tracking_reference ON orders.shipments
    FOR EACH ROW EXECUTE FUNCTION orders.conveyor_shipments_tracking_sync();
