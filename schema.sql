-- souk database schema. Forward-only migrations, applied in order; the
-- database's PRAGMA user_version is the number of the last one applied.
-- Each step starts with a line `-- migration N: what it does`. Never edit a
-- step that has shipped: add a new one.

-- migration 1: service metadata (readiness probe, instance facts)
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- migration 2: users and sessions
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,            -- random 63-bit, never sequential
    username      TEXT NOT NULL UNIQUE,           -- lowercase; the unique index serves prefix search
    display_name  TEXT,
    password_hash TEXT NOT NULL,                  -- argon2id PHC string
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at    INTEGER NOT NULL,               -- unix seconds
    last_login_at INTEGER                         -- unix seconds
) STRICT;
CREATE INDEX users_created_at ON users (created_at);
CREATE INDEX users_last_login_at ON users (last_login_at);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,         -- SHA-256 of the token; the token itself is never stored
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_user_id ON sessions (user_id);
