-- Run once by the postgres image, on first start with an empty data volume,
-- in $POSTGRES_DB as $POSTGRES_USER (see /docker-entrypoint-initdb.d).
-- Schema objects are NOT created here: `conveyor db migrate` owns the schema.

-- Query statistics for the workers' statements; the library is preloaded by
-- shared_preload_libraries in postgresql.conf.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
