-- conveyor:no-transaction
-- Expand/contract, step 2 of 3 (docs/deploy.md, "Expand/contract"): the rows written before V015
-- get their tracking_reference, and lookups by it (a carrier's webhook names the parcel) get an index.
--
-- Applied statement by statement outside a transaction, each one safe to run again (an
-- interrupted run resumes at the statement it was in):
-- 1. the copy, in batches of 5,000 rows along the primary key, each batch committed on its
--    own, so no lock is held for long and the workers (both releases) keep writing meanwhile.
--    Rows written since V015 need nothing (its trigger filled both columns); a row already
--    copied is skipped, so running it again does no work twice.
DO $$
DECLARE
    last_id text := '';
    last_event text := '';
BEGIN
    LOOP
        WITH batch AS (
            SELECT shipment_id, event FROM orders.shipments
            WHERE (shipment_id, event) > (last_id, last_event)
            ORDER BY shipment_id, event
            LIMIT 5000
        ), copied AS (
            UPDATE orders.shipments s SET tracking_reference = s.tracking_number
            FROM batch b
            WHERE s.shipment_id = b.shipment_id AND s.event = b.event
              AND s.tracking_reference IS NULL AND s.tracking_number IS NOT NULL
        )
        SELECT b.shipment_id, b.event INTO last_id, last_event
        FROM batch b ORDER BY b.shipment_id DESC, b.event DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        COMMIT;
    END LOOP;
END
$$;

-- 2. the index, built without blocking writes. The runner drops the INVALID leftover of an
--    interrupted build before it tries again (IF NOT EXISTS alone would take it as done).
CREATE INDEX CONCURRENTLY IF NOT EXISTS shipments_tracking_reference_idx
    ON orders.shipments (tracking_reference) WHERE tracking_reference IS NOT NULL;

-- 3. the copy missed no row (rows older than V015 were all committed when it ran; newer ones
--    went through its trigger): only then does this step count as done.
DO $$
BEGIN
    IF EXISTS (SELECT FROM orders.shipments WHERE tracking_reference IS NULL AND tracking_number IS NOT NULL) THEN
        RAISE EXCEPTION 'orders.shipments has rows without tracking_reference after the backfill'
            USING HINT = 'is the trigger shipments_tracking_sync disabled? Enable it, copy the rows with '
                         'UPDATE orders.shipments SET tracking_reference = tracking_number WHERE '
                         'tracking_reference IS NULL AND tracking_number IS NOT NULL, then conveyor db migrate again';
    END IF;
END
$$;
