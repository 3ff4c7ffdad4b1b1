-- Safe start (workers/runtime/schema_gate.py): `conveyor run` compares the applied
-- migrations with its own before it consumes, and workers log in as conveyor_worker.
-- It may read which versions are applied with which checksum, and nothing else of the table.
GRANT SELECT (version, filename, checksum, applied_at) ON schema_history TO conveyor_worker;
