-- conveyor:contract
-- Expand/contract, step 3 of 3 (docs/deploy.md, "Expand/contract"): orders.shipments.tracking_number
-- and the trigger that kept it in step with tracking_reference go.
--
-- `conveyor db migrate` holds this file back (status `held`); `conveyor db migrate --contract`
-- applies it once every worker runs the release that writes tracking_reference. A worker of the
-- previous release would fail every shipment.dispatched from here on.
-- Short: the trigger, its function and the column go in one transaction; DROP COLUMN only
-- marks the column dropped in the catalog (no table rewrite).
DROP TRIGGER IF EXISTS shipments_tracking_sync ON orders.shipments;
DROP FUNCTION IF EXISTS orders.conveyor_shipments_tracking_sync();
ALTER TABLE orders.shipments DROP COLUMN IF EXISTS tracking_number;
