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

-- migration 3: the ledger (accounts, append-only entries, totals, idempotency)
-- One row per user and currency; CHECKs make a negative balance impossible.
CREATE TABLE accounts (
    user_id   INTEGER NOT NULL REFERENCES users (id),
    currency  TEXT NOT NULL,
    available INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held      INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    PRIMARY KEY (user_id, currency)
) STRICT, WITHOUT ROWID;

-- Money that entered and left the system, per currency. Every balance is at
-- most deposited - withdrawn <= i64::MAX, so no balance or sum of balances can
-- overflow.
CREATE TABLE currency_totals (
    currency  TEXT PRIMARY KEY NOT NULL,
    deposited INTEGER NOT NULL DEFAULT 0 CHECK (deposited >= 0),
    withdrawn INTEGER NOT NULL DEFAULT 0 CHECK (withdrawn >= 0 AND withdrawn <= deposited)
) STRICT, WITHOUT ROWID;

-- One row per user side of a movement ("leg"): a transfer has two (out for
-- the sender, in for the recipient), a deposit or withdrawal one. Entries are
-- never changed or deleted (triggers below).
CREATE TABLE entries (
    seq          INTEGER PRIMARY KEY,              -- insertion order; never shown
    id           INTEGER NOT NULL UNIQUE,          -- random, shown
    movement_id  INTEGER NOT NULL,                 -- shared by the legs of one movement (the transfer id)
    user_id      INTEGER NOT NULL REFERENCES users (id),
    kind         TEXT NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer',
                                               'escrow_hold', 'escrow_release', 'escrow_refund')),
    direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    currency     TEXT NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    counterparty INTEGER,                          -- the other user, NULL for the outside world
    escrow_id    INTEGER,
    memo         TEXT,
    reference    TEXT,                             -- deposits and withdrawals: e.g. a txid
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX entries_user_seq ON entries (user_id, seq);
CREATE INDEX entries_user_currency_seq ON entries (user_id, currency, seq);
CREATE INDEX entries_movement ON entries (movement_id);
CREATE INDEX entries_kind_created ON entries (kind, created_at);
CREATE UNIQUE INDEX entries_reference ON entries (kind, currency, reference) WHERE reference IS NOT NULL;
CREATE TRIGGER entries_never_change BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER entries_never_vanish BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;

-- Idempotency keys, per caller, committed with the movement they guard.
CREATE TABLE idempotency (
    user_id     INTEGER NOT NULL,
    key         TEXT NOT NULL,
    fingerprint BLOB NOT NULL,                     -- SHA-256 of the route and the parsed request
    status      INTEGER NOT NULL,
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency (created_at);

-- migration 4: escrow
CREATE TABLE escrows (
    seq        INTEGER PRIMARY KEY,                -- creation order; never shown
    id         INTEGER NOT NULL UNIQUE,            -- random, shown
    buyer      INTEGER NOT NULL REFERENCES users (id),
    seller     INTEGER NOT NULL REFERENCES users (id),
    currency   TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    state      TEXT NOT NULL CHECK (state IN ('held', 'released', 'refunded', 'disputed', 'resolved')),
    memo       TEXT,
    created_at INTEGER NOT NULL,
    release_at INTEGER NOT NULL,
    closed_at  INTEGER,
    to_seller  INTEGER CHECK (to_seller >= 0),     -- a resolution's split
    to_buyer   INTEGER CHECK (to_buyer >= 0),
    CHECK (buyer != seller)
) STRICT;
CREATE INDEX escrows_buyer_seq ON escrows (buyer, seq);
CREATE INDEX escrows_seller_seq ON escrows (seller, seq);
CREATE INDEX escrows_due ON escrows (release_at) WHERE state = 'held';
CREATE INDEX entries_escrow ON entries (escrow_id) WHERE escrow_id IS NOT NULL;

-- migration 5: entries without random-order indexes
-- Random entry ids needed a unique index, and with the (user_id, seq) and
-- movement_id indexes every entry dirtied three random pages: most of a
-- group commit's cost. New entries store no id: it is souk_entry_id(seq), a
-- keyed permutation of seq (src/store/seq_ids.rs, key in meta). Entries
-- from before keep their random ids, still unique and indexed. Listing all
-- currencies merges (user_id, currency, seq) per currency; `souk check`
-- groups legs by movement without an index.
DROP TRIGGER entries_never_change;
DROP TRIGGER entries_never_vanish;
CREATE TABLE entries_v5 (
    seq          INTEGER PRIMARY KEY,              -- insertion order; never shown
    id           INTEGER,                          -- random id of entries before migration 5, else NULL
    movement_id  INTEGER NOT NULL,                 -- shared by the legs of one movement (the transfer id)
    user_id      INTEGER NOT NULL REFERENCES users (id),
    kind         TEXT NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer',
                                               'escrow_hold', 'escrow_release', 'escrow_refund')),
    direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    currency     TEXT NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    counterparty INTEGER,                          -- the other user, NULL for the outside world
    escrow_id    INTEGER,
    memo         TEXT,
    reference    TEXT,                             -- deposits and withdrawals: e.g. a txid
    created_at   INTEGER NOT NULL
) STRICT;
INSERT INTO entries_v5 (seq, id, movement_id, user_id, kind, direction, currency, amount,
                        counterparty, escrow_id, memo, reference, created_at)
SELECT seq, id, movement_id, user_id, kind, direction, currency, amount,
       counterparty, escrow_id, memo, reference, created_at
FROM entries ORDER BY seq;
DROP TABLE entries;
ALTER TABLE entries_v5 RENAME TO entries;
CREATE UNIQUE INDEX entries_legacy_id ON entries (id) WHERE id IS NOT NULL;
CREATE INDEX entries_user_currency_seq ON entries (user_id, currency, seq);
CREATE INDEX entries_kind_created ON entries (kind, created_at);
CREATE UNIQUE INDEX entries_reference ON entries (kind, currency, reference) WHERE reference IS NOT NULL;
CREATE INDEX entries_escrow ON entries (escrow_id) WHERE escrow_id IS NOT NULL;
CREATE TRIGGER entries_never_change BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER entries_never_vanish BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;

-- migration 6: listings, their tags and their full-text index
-- Listings are never deleted (a seller closes one), so seq, the insertion
-- order, only grows: it orders "newest" pages and is the rowid of the
-- full-text index. tags holds the JSON array as shown; listing_tags is its
-- index for the tag filter. listing_tags and listings_fts are written only
-- by the triggers below, in the listing's own write transaction, so they
-- can never disagree with the listings they index.
CREATE TABLE listings (
    seq         INTEGER PRIMARY KEY,               -- insertion order; never shown
    id          INTEGER NOT NULL UNIQUE,           -- random, shown
    seller      INTEGER NOT NULL REFERENCES users (id),
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    currency    TEXT NOT NULL,
    price       INTEGER NOT NULL CHECK (price > 0), -- minor units
    quantity    INTEGER NOT NULL CHECK (quantity >= 0),
    tags        TEXT NOT NULL CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    state       TEXT NOT NULL CHECK (state IN ('active', 'paused', 'closed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX listings_seller_seq ON listings (seller, seq);
CREATE INDEX listings_state_seq ON listings (state, seq);
CREATE INDEX listings_state_currency_price ON listings (state, currency, price, seq);

CREATE TABLE listing_tags (
    tag         TEXT NOT NULL,
    listing_seq INTEGER NOT NULL REFERENCES listings (seq),
    PRIMARY KEY (tag, listing_seq)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER listing_tags_insert AFTER INSERT ON listings
BEGIN
    INSERT OR IGNORE INTO listing_tags (tag, listing_seq)
    SELECT value, new.seq FROM json_each(new.tags);
END;
CREATE TRIGGER listing_tags_update AFTER UPDATE OF tags ON listings
WHEN old.tags IS NOT new.tags
BEGIN
    DELETE FROM listing_tags
    WHERE listing_seq = old.seq AND tag IN (SELECT value FROM json_each(old.tags));
    INSERT OR IGNORE INTO listing_tags (tag, listing_seq)
    SELECT value, new.seq FROM json_each(new.tags);
END;

-- External content: the text lives once, in listings. Accents and case are
-- folded by the tokenizer; the prefix indexes serve the last word of a
-- search, which is matched as a prefix.
CREATE VIRTUAL TABLE listings_fts USING fts5 (
    title, description,
    content = 'listings', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3 4'
);
CREATE TRIGGER listings_fts_insert AFTER INSERT ON listings
BEGIN
    INSERT INTO listings_fts (rowid, title, description)
    VALUES (new.seq, new.title, new.description);
END;
CREATE TRIGGER listings_fts_update AFTER UPDATE OF title, description ON listings
WHEN old.title IS NOT new.title OR old.description IS NOT new.description
BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, title, description)
    VALUES ('delete', old.seq, old.title, old.description);
    INSERT INTO listings_fts (rowid, title, description)
    VALUES (new.seq, new.title, new.description);
END;
CREATE TRIGGER listings_fts_delete AFTER DELETE ON listings
BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, title, description)
    VALUES ('delete', old.seq, old.title, old.description);
END;

-- migration 7: orders, the platform's fee account, reviews and order messages
-- The platform is user 0: its accounts hold the fees, so fees are ordinary
-- ledger money (entries, replay, conservation) and `souk check` covers them.
-- Clients can never name id 0 (ids are 1..=2^63-1), its name holds a
-- character no username may have and sorts after every username, and it
-- cannot log in (suspended, no password hash).
INSERT INTO users (id, username, display_name, password_hash, role, status, created_at)
VALUES (0, '·platform', 'platform fees', '!', 'user', 'suspended', CAST(strftime('%s', 'now') AS INTEGER));
-- The platform's entries (fees in, fee withdrawals out), for GET /admin/fees.
CREATE INDEX entries_platform ON entries (currency, kind) WHERE user_id = 0;

-- An order's escrow belongs to it: order_id names the order, and such an
-- escrow has no release time (it moves only through its order). Rebuilt
-- because release_at becomes nullable; no table references escrows yet.
CREATE TABLE escrows_v7 (
    seq        INTEGER PRIMARY KEY,                -- creation order; never shown
    id         INTEGER NOT NULL UNIQUE,            -- random, shown
    buyer      INTEGER NOT NULL REFERENCES users (id),
    seller     INTEGER NOT NULL REFERENCES users (id),
    currency   TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    state      TEXT NOT NULL CHECK (state IN ('held', 'released', 'refunded', 'disputed', 'resolved')),
    memo       TEXT,
    created_at INTEGER NOT NULL,
    release_at INTEGER,                            -- NULL exactly for an order's escrow
    closed_at  INTEGER,
    to_seller  INTEGER CHECK (to_seller >= 0),     -- a resolution's split (before any fee)
    to_buyer   INTEGER CHECK (to_buyer >= 0),
    order_id   INTEGER UNIQUE,                     -- the order it pays for; NULL for a plain escrow
    CHECK (buyer != seller),
    CHECK ((order_id IS NULL) = (release_at IS NOT NULL))
) STRICT;
INSERT INTO escrows_v7 (seq, id, buyer, seller, currency, amount, state, memo, created_at,
                        release_at, closed_at, to_seller, to_buyer, order_id)
SELECT seq, id, buyer, seller, currency, amount, state, memo, created_at,
       release_at, closed_at, to_seller, to_buyer, NULL
FROM escrows ORDER BY seq;
DROP TABLE escrows;
ALTER TABLE escrows_v7 RENAME TO escrows;
CREATE INDEX escrows_buyer_seq ON escrows (buyer, seq);
CREATE INDEX escrows_seller_seq ON escrows (seller, seq);
CREATE INDEX escrows_due ON escrows (release_at) WHERE state = 'held' AND release_at IS NOT NULL;

-- An order buys `quantity` of one listing at the title and price it had
-- when placed. Its money waits in its escrow; the fee rate is fixed at
-- placement (fee_bps) and `fee` is the fee of the order's amount, or after a
-- resolution the fee actually taken from the seller's part.
CREATE TABLE orders (
    seq            INTEGER PRIMARY KEY,            -- placement order; never shown
    id             INTEGER NOT NULL UNIQUE,        -- random, shown
    listing        INTEGER NOT NULL REFERENCES listings (id),
    buyer          INTEGER NOT NULL REFERENCES users (id),
    seller         INTEGER NOT NULL REFERENCES users (id),
    title          TEXT NOT NULL,                  -- the listing's title when placed
    currency       TEXT NOT NULL,
    unit_price     INTEGER NOT NULL CHECK (unit_price > 0),
    quantity       INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    fee_bps        INTEGER NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    fee            INTEGER NOT NULL CHECK (fee >= 0 AND fee <= amount),
    state          TEXT NOT NULL CHECK (state IN ('paid', 'shipped', 'completed', 'cancelled',
                                                  'disputed', 'resolved')),
    memo           TEXT,
    tracking       TEXT,
    dispute_reason TEXT,
    escrow         INTEGER NOT NULL UNIQUE REFERENCES escrows (id),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    ship_by        INTEGER NOT NULL,               -- unix seconds; the ship timer fires after it
    confirm_by     INTEGER,                        -- set when shipped; the confirm timer fires after it
    CHECK (buyer != seller),
    CHECK (amount = unit_price * quantity)
) STRICT;
CREATE INDEX orders_buyer_seq ON orders (buyer, seq);
CREATE INDEX orders_seller_seq ON orders (seller, seq);
CREATE INDEX orders_state_seq ON orders (state, seq);
CREATE INDEX orders_ship_due ON orders (ship_by) WHERE state = 'paid';
CREATE INDEX orders_confirm_due ON orders (confirm_by) WHERE state = 'shipped';

-- One review per side of a finished order; rating_totals, kept by the
-- trigger in the review's own transaction, is each user's summary.
CREATE TABLE reviews (
    seq        INTEGER PRIMARY KEY,                -- insertion order; never shown
    id         INTEGER NOT NULL UNIQUE,            -- random, shown
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    author     INTEGER NOT NULL REFERENCES users (id),
    subject    INTEGER NOT NULL REFERENCES users (id),
    rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment    TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (order_id, author),
    CHECK (author != subject)
) STRICT;
CREATE INDEX reviews_subject_seq ON reviews (subject, seq);
CREATE TABLE rating_totals (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    count   INTEGER NOT NULL CHECK (count >= 0),
    total   INTEGER NOT NULL CHECK (total >= 0)  -- sum of ratings
) STRICT;
CREATE TRIGGER reviews_rating_totals AFTER INSERT ON reviews
BEGIN
    INSERT INTO rating_totals (user_id, count, total) VALUES (new.subject, 1, new.rating)
    ON CONFLICT (user_id) DO UPDATE SET count = count + 1, total = total + excluded.total;
END;

-- Messages about one order between its buyer, its seller and admins.
CREATE TABLE order_messages (
    seq        INTEGER PRIMARY KEY,                -- insertion order, the reading order; never shown
    id         INTEGER NOT NULL UNIQUE,            -- random, shown
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    author     INTEGER NOT NULL REFERENCES users (id),
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX order_messages_order_seq ON order_messages (order_id, seq);

-- migration 8: a user's orders in one state
-- GET /orders?state=… walked (buyer, seq) or (seller, seq) and read every
-- order of the user to test its state; these indexes read only the orders
-- in the asked state.
CREATE INDEX orders_buyer_state_seq ON orders (buyer, state, seq);
CREATE INDEX orders_seller_state_seq ON orders (seller, state, seq);

-- migration 9: a new listing's index rows are written by its own write job
-- A statement that fires triggers runs under a statement journal, and once
-- the full-text index has been written in a transaction SQLite asks FTS5
-- to flush its pending terms to disk at every such statement. With ~35 new
-- listings in one group commit, each insert wrote an index segment of its
-- own and FTS5 spent most of the writer's time merging them. listings::create
-- now writes the tag rows and the full-text row itself, with plain
-- single-row statements (no statement journal), in the listing's write
-- job: FTS5 flushes once per commit. Edits keep their triggers (an edit is
-- rare, and its flush costs one segment).
DROP TRIGGER listing_tags_insert;
DROP TRIGGER listings_fts_insert;

-- migration 10: escrows by state
-- The admin's disputes queue (GET /admin/escrows?state=disputed) read the
-- whole escrows table newest first to find the few disputed ones; this
-- index reads only the escrows in the asked state, newest first.
CREATE INDEX escrows_state_seq ON escrows (state, seq);


-- migration 11: orders and escrows write no index under a random key
-- An order placed dirtied a random page in each of six indexes besides
-- those of the buyer's rows; at ~60 orders per group commit those pages
-- were most of its WAL frames. Gone:
-- * the UNIQUE indexes on orders.id and escrows.id. Like entries
--   (migration 5), new orders and escrows store no id: it is
--   souk_order_id(seq) or souk_escrow_id(seq), keyed permutations of seq
--   with keys of their own in meta (src/store/seq_ids.rs). Rows from
--   before keep their random ids, still unique and indexed (partial
--   indexes: only those rows).
-- * the UNIQUE indexes on the link columns, orders.escrow and
--   escrows.order_id, which nothing read. The links hold the other row's
--   shown id, as entries.escrow_id does, and are made once, by the job
--   that places the order; `souk check` verifies them both ways
--   (invariant 9: an order's escrow names the order; an escrow naming an
--   order is that order's escrow), which is one-to-one without the
--   indexes.
-- * orders_buyer_seq and orders_seller_seq: a party's orders are read
--   through (party, state, seq), one keyset page per state, merged
--   (orders::page).
-- * entries_escrow: only the check's scans used it, and it cost a random
--   page per escrow movement.
-- A foreign key needs a full unique index on the column it names, so the
-- links by shown id (orders.escrow, reviews.order_id,
-- order_messages.order_id) are plain columns now, written by the job that
-- makes the row. The four tables are rebuilt with foreign keys off
-- (store::migrate), which runs PRAGMA foreign_key_check before committing.
CREATE TABLE escrows_v11 (
    seq        INTEGER PRIMARY KEY,                -- creation order; never shown
    id         INTEGER,                            -- random id of escrows before migration 11, else NULL
    buyer      INTEGER NOT NULL REFERENCES users (id),
    seller     INTEGER NOT NULL REFERENCES users (id),
    currency   TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    state      TEXT NOT NULL CHECK (state IN ('held', 'released', 'refunded', 'disputed', 'resolved')),
    memo       TEXT,
    created_at INTEGER NOT NULL,
    release_at INTEGER,                            -- NULL exactly for an order's escrow
    closed_at  INTEGER,
    to_seller  INTEGER CHECK (to_seller >= 0),     -- a resolution's split (before any fee)
    to_buyer   INTEGER CHECK (to_buyer >= 0),
    order_id   INTEGER,                            -- the order it pays for (its shown id); NULL for a plain escrow
    CHECK (buyer != seller),
    CHECK ((order_id IS NULL) = (release_at IS NOT NULL))
) STRICT;
INSERT INTO escrows_v11 (seq, id, buyer, seller, currency, amount, state, memo, created_at,
                         release_at, closed_at, to_seller, to_buyer, order_id)
SELECT seq, id, buyer, seller, currency, amount, state, memo, created_at,
       release_at, closed_at, to_seller, to_buyer, order_id
FROM escrows ORDER BY seq;
DROP TABLE escrows;
ALTER TABLE escrows_v11 RENAME TO escrows;
CREATE UNIQUE INDEX escrows_legacy_id ON escrows (id) WHERE id IS NOT NULL;
CREATE INDEX escrows_buyer_seq ON escrows (buyer, seq);
CREATE INDEX escrows_seller_seq ON escrows (seller, seq);
CREATE INDEX escrows_due ON escrows (release_at) WHERE state = 'held' AND release_at IS NOT NULL;
CREATE INDEX escrows_state_seq ON escrows (state, seq);
CREATE TABLE orders_v11 (
    seq            INTEGER PRIMARY KEY,            -- placement order; never shown
    id             INTEGER,                        -- random id of orders before migration 11, else NULL
    listing        INTEGER NOT NULL REFERENCES listings (id),
    buyer          INTEGER NOT NULL REFERENCES users (id),
    seller         INTEGER NOT NULL REFERENCES users (id),
    title          TEXT NOT NULL,                  -- the listing's title when placed
    currency       TEXT NOT NULL,
    unit_price     INTEGER NOT NULL CHECK (unit_price > 0),
    quantity       INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    fee_bps        INTEGER NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    fee            INTEGER NOT NULL CHECK (fee >= 0 AND fee <= amount),
    state          TEXT NOT NULL CHECK (state IN ('paid', 'shipped', 'completed', 'cancelled',
                                                  'disputed', 'resolved')),
    memo           TEXT,
    tracking       TEXT,
    dispute_reason TEXT,
    escrow         INTEGER NOT NULL,               -- its escrow's shown id
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    ship_by        INTEGER NOT NULL,               -- unix seconds; the ship timer fires after it
    confirm_by     INTEGER,                        -- set when shipped; the confirm timer fires after it
    CHECK (buyer != seller),
    CHECK (amount = unit_price * quantity)
) STRICT;
INSERT INTO orders_v11 (seq, id, listing, buyer, seller, title, currency, unit_price, quantity,
                        amount, fee_bps, fee, state, memo, tracking, dispute_reason, escrow,
                        created_at, updated_at, ship_by, confirm_by)
SELECT seq, id, listing, buyer, seller, title, currency, unit_price, quantity,
       amount, fee_bps, fee, state, memo, tracking, dispute_reason, escrow,
       created_at, updated_at, ship_by, confirm_by
FROM orders ORDER BY seq;
DROP TABLE orders;
ALTER TABLE orders_v11 RENAME TO orders;
CREATE UNIQUE INDEX orders_legacy_id ON orders (id) WHERE id IS NOT NULL;
CREATE INDEX orders_state_seq ON orders (state, seq);
CREATE INDEX orders_ship_due ON orders (ship_by) WHERE state = 'paid';
CREATE INDEX orders_confirm_due ON orders (confirm_by) WHERE state = 'shipped';
CREATE INDEX orders_buyer_state_seq ON orders (buyer, state, seq);
CREATE INDEX orders_seller_state_seq ON orders (seller, state, seq);
CREATE TABLE reviews_v11 (
    seq        INTEGER PRIMARY KEY,                -- insertion order; never shown
    id         INTEGER NOT NULL UNIQUE,            -- random, shown
    order_id   INTEGER NOT NULL,                   -- the order's shown id
    author     INTEGER NOT NULL REFERENCES users (id),
    subject    INTEGER NOT NULL REFERENCES users (id),
    rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment    TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (order_id, author),
    CHECK (author != subject)
) STRICT;
INSERT INTO reviews_v11 (seq, id, order_id, author, subject, rating, comment, created_at)
SELECT seq, id, order_id, author, subject, rating, comment, created_at
FROM reviews ORDER BY seq;
DROP TABLE reviews;
ALTER TABLE reviews_v11 RENAME TO reviews;
CREATE INDEX reviews_subject_seq ON reviews (subject, seq);
CREATE TRIGGER reviews_rating_totals AFTER INSERT ON reviews
BEGIN
    INSERT INTO rating_totals (user_id, count, total) VALUES (new.subject, 1, new.rating)
    ON CONFLICT (user_id) DO UPDATE SET count = count + 1, total = total + excluded.total;
END;
CREATE TABLE order_messages_v11 (
    seq        INTEGER PRIMARY KEY,                -- insertion order, the reading order; never shown
    id         INTEGER NOT NULL UNIQUE,            -- random, shown
    order_id   INTEGER NOT NULL,                   -- the order's shown id
    author     INTEGER NOT NULL REFERENCES users (id),
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO order_messages_v11 (seq, id, order_id, author, body, created_at)
SELECT seq, id, order_id, author, body, created_at
FROM order_messages ORDER BY seq;
DROP TABLE order_messages;
ALTER TABLE order_messages_v11 RENAME TO order_messages;
CREATE INDEX order_messages_order_seq ON order_messages (order_id, seq);
DROP INDEX entries_escrow;
