-- souk database schema. Forward-only migrations, applied in order; the
-- database's PRAGMA user_version is the number of the last one applied.
-- Each step starts with a line `-- migration N: what it does`. Never edit a
-- step that has shipped: add a new one.

-- migration 1: service metadata (readiness probe, instance facts)
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
