//! Listings: what sellers offer, their rules (`Title`, `Description`, price,
//! quantity, `Tags`), their states (`active`, `paused`, `closed`; closed is
//! final), and the SQL that stores, pages and searches them. The full-text
//! index is kept by triggers (schema.sql, migration 6), never written here.

pub mod search;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::config::Currencies;
use crate::error::{Error, Result};
use crate::ids;
use crate::ledger::money::{Amount, Currency, format_minor};
use crate::store::{Touched, WriteTx};

/// A title: long enough for a product name with its model and condition,
/// short enough to show whole in a list.
pub const TITLE_CHARS_MAX: usize = 200;
/// A description: a few pages of text; bounds the row and the index.
pub const DESCRIPTION_CHARS_MAX: usize = 20_000;
/// Stock of one listing: bounds what one order can reserve and keeps every
/// sum of quantities far from overflow.
pub const QUANTITY_MAX: i64 = 1_000_000;
/// Quantity when none is given: the common case of one item.
pub const QUANTITY_DEFAULT: i64 = 1;
/// Tags per listing: enough to classify, few enough that the tag index
/// grows by at most this many rows per listing.
pub const TAGS_MAX: usize = 10;
/// Characters of one tag (`[a-z0-9-]`).
pub const TAG_CHARS_MAX: usize = 32;

/// Where a listing is in its life. `closed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingState {
    /// Visible to everyone and found by search.
    Active,
    /// Hidden from everyone but the seller and admins; may become active again.
    Paused,
    /// Hidden like paused, and never changes again.
    Closed,
}

impl ListingState {
    pub const ALL: [ListingState; 3] = [
        ListingState::Active,
        ListingState::Paused,
        ListingState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListingState::Active => "active",
            ListingState::Paused => "paused",
            ListingState::Closed => "closed",
        }
    }
}

crate::util::stored_as_text!(ListingState, "listing state");

#[derive(Debug, Clone)]
pub struct Listing {
    pub id: i64,
    pub seller: i64,
    pub title: String,
    pub description: String,
    pub currency: String,
    pub price: i64,
    pub quantity: i64,
    pub tags: Vec<String>,
    pub state: ListingState,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A listing as the API shows it, borrowing the listing's text (rendered
/// straight to JSON: no copies of a long description).
#[derive(Serialize)]
pub struct ListingView<'a> {
    pub id: String,
    pub seller: String,
    pub title: &'a str,
    pub description: &'a str,
    pub currency: &'a str,
    pub price: String,
    pub quantity: i64,
    pub tags: &'a [String],
    pub state: &'static str,
    pub created_at: String,
    pub updated_at: String,
}

impl Listing {
    pub fn view(&self, currencies: &Currencies) -> ListingView<'_> {
        let decimals = crate::ledger::decimals_of(currencies, &self.currency);
        ListingView {
            id: self.id.to_string(),
            seller: self.seller.to_string(),
            title: &self.title,
            description: &self.description,
            currency: &self.currency,
            price: format_minor(i128::from(self.price), decimals),
            quantity: self.quantity,
            tags: &self.tags,
            state: self.state.as_str(),
            created_at: crate::clock::rfc3339(self.created_at),
            updated_at: crate::clock::rfc3339(self.updated_at),
        }
    }

    /// Whether `viewer` (None: anonymous) may see it: anyone while it is
    /// active, otherwise only its seller and admins.
    pub fn visible_to(&self, viewer: Option<i64>, admin: bool) -> bool {
        visible(self.state, self.seller, viewer, admin)
    }
}

fn visible(state: ListingState, seller: i64, viewer: Option<i64>, admin: bool) -> bool {
    state == ListingState::Active || admin || viewer == Some(seller)
}

/// A listing as reads serve it, which is what the listings cache holds: its
/// JSON (`ListingView`, the same for every viewer) rendered once when
/// loaded, and the fields that decide who sees it and how it is edited.
#[derive(Debug)]
pub struct Shown {
    pub id: i64,
    pub seller: i64,
    pub state: ListingState,
    pub currency: String,
    pub view: Box<serde_json::value::RawValue>,
}

impl Shown {
    /// `listing` rendered.
    pub fn of(listing: &Listing, currencies: &Currencies) -> Result<Shown> {
        let view = serde_json::value::to_raw_value(&listing.view(currencies))
            .map_err(|e| Error::internal_from("serializing a listing", e))?;
        Ok(Shown {
            id: listing.id,
            seller: listing.seller,
            state: listing.state,
            currency: listing.currency.clone(),
            view,
        })
    }

    /// As `Listing::visible_to`.
    pub fn visible_to(&self, viewer: Option<i64>, admin: bool) -> bool {
        visible(self.state, self.seller, viewer, admin)
    }
}

// ---- parsing ---------------------------------------------------------------

/// A title: 1..=TITLE_CHARS_MAX characters, no control characters. Only
/// `Title::parse` makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(text: &str) -> Result<Title> {
        let chars = text.chars().count();
        if chars == 0 || chars > TITLE_CHARS_MAX {
            return Err(Error::invalid_field(
                "title",
                format!("title must be 1-{TITLE_CHARS_MAX} characters"),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(Error::invalid_field(
                "title",
                "title must not contain control characters",
            ));
        }
        Ok(Title(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description: 0..=DESCRIPTION_CHARS_MAX characters; line breaks and
/// tabs allowed, other control characters not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(text: &str) -> Result<Description> {
        if text.chars().count() > DESCRIPTION_CHARS_MAX {
            return Err(Error::invalid_field(
                "description",
                format!("description must be at most {DESCRIPTION_CHARS_MAX} characters"),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err(Error::invalid_field(
                "description",
                "description must not contain control characters other than newline and tab",
            ));
        }
        Ok(Description(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A quantity in stock: a JSON number with no fraction (`3` or `3.0`, as
/// JSON Schema's `integer`), 0..=QUANTITY_MAX.
pub fn parse_quantity(quantity: &serde_json::Number) -> Result<i64> {
    // `as` saturates, and the range check below refuses anything that
    // large; NaN and infinities have no zero fraction.
    let whole = quantity.as_i64().or_else(|| {
        quantity
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map(|f| f as i64)
    });
    match whole {
        Some(n) if (0..=QUANTITY_MAX).contains(&n) => Ok(n),
        _ => Err(Error::invalid_field(
            "quantity",
            format!("quantity must be a whole number 0-{QUANTITY_MAX}"),
        )),
    }
}

/// One tag: 1..=TAG_CHARS_MAX of `[a-z0-9-]`; `field` names it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag(String);

impl Tag {
    pub fn parse(field: &str, text: &str) -> Result<Tag> {
        let ok = (1..=TAG_CHARS_MAX).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(Error::invalid_field(
                field,
                format!(
                    "tag `{}` must be 1-{TAG_CHARS_MAX} of a-z, 0-9 and -",
                    ids::truncate(text, 40)
                ),
            ));
        }
        Ok(Tag(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A listing's tags: at most TAGS_MAX, each a `Tag`; a repeated tag is kept
/// once, in the place it first appears.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(Vec<String>);

impl Tags {
    pub fn parse(tags: &[String]) -> Result<Tags> {
        if tags.len() > TAGS_MAX {
            return Err(Error::invalid_field(
                "tags",
                format!("tags takes at most {TAGS_MAX} tags"),
            ));
        }
        let mut parsed: Vec<String> = Vec::with_capacity(tags.len());
        for tag in tags {
            let tag = Tag::parse("tags", tag)?.0;
            if !parsed.contains(&tag) {
                parsed.push(tag);
            }
        }
        Ok(Tags(parsed))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// As stored in `listings.tags`: a JSON array of strings.
    fn to_json(&self) -> Result<String> {
        serde_json::to_string(&self.0).map_err(|e| Error::internal_from("encoding tags", e))
    }
}

// ---- storage ---------------------------------------------------------------

const COLUMNS: &str = "l.id, l.seller, l.title, l.description, l.currency, l.price, l.quantity, \
                       l.tags, l.state, l.created_at, l.updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Listing> {
    let tags: String = row.get(7)?;
    let tags = serde_json::from_str(&tags).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(Listing {
        id: row.get(0)?,
        seller: row.get(1)?,
        title: row.get(2)?,
        description: row.get(3)?,
        currency: row.get(4)?,
        price: row.get(5)?,
        quantity: row.get(6)?,
        tags,
        state: row.get(8)?,
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Listing>> {
    let sql = format!("SELECT {COLUMNS} FROM listings l WHERE l.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// The listings `ids` (None for an unknown id), in order, from one
/// snapshot.
pub fn by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<Option<Listing>>> {
    let snapshot = conn.unchecked_transaction()?;
    let found = ids
        .iter()
        .map(|&id| by_id(&snapshot, id))
        .collect::<Result<Vec<_>>>()?;
    snapshot.finish()?;
    Ok(found)
}

pub struct NewListing {
    pub seller: i64,
    pub title: Title,
    pub description: Description,
    pub currency: Currency,
    pub price: Amount,
    pub quantity: i64,
    pub tags: Tags,
}

/// Stores a new active listing (the triggers index its text and tags).
pub fn create(tx: &WriteTx<'_>, new: &NewListing, now: i64) -> Result<Listing> {
    let id = ids::random_id()?;
    tx.prepare_cached(
        "INSERT INTO listings (id, seller, title, description, currency, price, quantity, tags,
                               state, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, ?9)",
    )?
    .execute(params![
        id,
        new.seller,
        new.title.as_str(),
        new.description.as_str(),
        new.currency.code,
        new.price.minor(),
        new.quantity,
        new.tags.to_json()?,
        now
    ])?;
    index_new(
        tx,
        tx.last_insert_rowid(),
        new.title.as_str(),
        new.description.as_str(),
        new.tags.as_slice(),
    )?;
    // No touch: a new id cannot be cached (misses are not stored), and an
    // invalidation would only throw away concurrent cache fills.
    Ok(Listing {
        id,
        seller: new.seller,
        title: new.title.as_str().to_owned(),
        description: new.description.as_str().to_owned(),
        currency: new.currency.code.clone(),
        price: new.price.minor(),
        quantity: new.quantity,
        tags: new.tags.as_slice().to_vec(),
        state: ListingState::Active,
        created_at: now,
        updated_at: now,
    })
}

/// Writes a new listing's rows of the tag index and the full-text index,
/// in its write job (edits keep both in step by triggers: schema.sql,
/// migrations 6 and 9). Each is a single-row INSERT of its own: a statement
/// with triggers or a SELECT would run under a statement journal, which
/// makes FTS5 flush its pending terms to disk, a segment per listing
/// instead of one per commit.
fn index_new(
    conn: &Connection,
    seq: i64,
    title: &str,
    description: &str,
    tags: &[String],
) -> Result<()> {
    let mut tag_row = conn
        .prepare_cached("INSERT OR IGNORE INTO listing_tags (tag, listing_seq) VALUES (?1, ?2)")?;
    for tag in tags {
        tag_row.execute(params![tag, seq])?;
    }
    conn.prepare_cached(
        "INSERT INTO listings_fts (rowid, title, description) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![seq, title, description])?;
    Ok(())
}

/// What a PATCH changes; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub price: Option<Amount>,
    pub quantity: Option<i64>,
    pub tags: Option<Tags>,
    pub state: Option<ListingState>,
}

impl Changes {
    /// Whether these changes can move a listing into, out of or within
    /// search results: anything but the quantity alone.
    pub fn searchable(&self) -> bool {
        self.title.is_some()
            || self.description.is_some()
            || self.price.is_some()
            || self.tags.is_some()
            || self.state.is_some()
    }
}

/// Applies `changes` unless the listing is closed (409 `invalid_state`):
/// one conditional UPDATE, so a change racing a close either lands before
/// it or is refused.
pub fn update(tx: &WriteTx<'_>, id: i64, changes: &Changes, now: i64) -> Result<Listing> {
    let tags = changes.tags.as_ref().map(Tags::to_json).transpose()?;
    let changed = tx
        .prepare_cached(
            "UPDATE listings SET title = coalesce(?2, title),
                                 description = coalesce(?3, description),
                                 price = coalesce(?4, price),
                                 quantity = coalesce(?5, quantity),
                                 tags = coalesce(?6, tags),
                                 state = coalesce(?7, state),
                                 updated_at = ?8
             WHERE id = ?1 AND state != 'closed'",
        )?
        .execute(params![
            id,
            changes.title.as_ref().map(Title::as_str),
            changes.description.as_ref().map(Description::as_str),
            changes.price.map(Amount::minor),
            changes.quantity,
            tags,
            changes.state.map(ListingState::as_str),
            now
        ])?;
    if changed == 0 {
        return Err(Error::Conflict {
            code: "invalid_state",
            message: "listing is closed; a closed listing cannot be changed".into(),
        });
    }
    tx.touch(Touched::Listing(id));
    if changes.searchable() {
        tx.touch(Touched::Searchable);
    }
    by_id(tx, id)?.ok_or(Error::NotFound)
}

/// A page of the seller's own listings in any state (or `state`), newest
/// first, after the listing `after` (one of the seller's, else
/// `UnknownCursor`).
pub fn page_own(
    conn: &Connection,
    seller: i64,
    state: Option<ListingState>,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Listing>> {
    let before_seq: i64 = match after {
        None => i64::MAX,
        Some(id) => conn
            .prepare_cached("SELECT seq FROM listings WHERE id = ?1 AND seller = ?2")?
            .query_row([id, seller], |row| row.get(0))
            .optional()?
            .ok_or(Error::UnknownCursor)?,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM listings l
         WHERE l.seller = ?1 AND (?2 IS NULL OR l.state = ?2) AND l.seq < ?3
         ORDER BY l.seq DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            seller,
            state.map(ListingState::as_str),
            before_seq,
            limit as i64
        ],
        from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<Listing>>>()?)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// `index_new` (for inserts) and the triggers of migration 6 (for
    /// edits) keep the full-text index and the tag index in step with the
    /// listings.
    #[test]
    fn the_indexes_stay_in_step_through_inserts_and_edits() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (7, 's', 'x', 0)",
            [],
        )
        .unwrap();
        let rows: [(i64, &str, &str, i64, &[&str]); 2] = [
            (1, "Café lamp", "brass", 5, &["old", "lamp"]),
            (2, "Desk", "oak", 9, &[]),
        ];
        for (id, title, description, price, tags) in rows {
            let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            conn.execute(
                "INSERT INTO listings (id, seller, title, description, currency, price, quantity,
                                       tags, state, created_at, updated_at)
                 VALUES (?1, 7, ?2, ?3, 'btc', ?4, 1, ?5, 'active', 0, 0)",
                rusqlite::params![
                    id,
                    title,
                    description,
                    price,
                    serde_json::to_string(&tags).unwrap()
                ],
            )
            .unwrap();
            super::index_new(&conn, conn.last_insert_rowid(), title, description, &tags).unwrap();
        }
        conn.execute_batch(
            "UPDATE listings SET title = 'Tea lamp', tags = '[\"lamp\",\"new\"]' WHERE id = 1;
             UPDATE listings SET quantity = 3 WHERE id = 2;",
        )
        .unwrap();
        // For an external-content table, rank 1 also compares the index
        // with the content table.
        conn.execute(
            "INSERT INTO listings_fts (listings_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .unwrap();
        let found = |words: &str| -> Vec<i64> {
            let mut stmt = conn
                .prepare(
                    "SELECT l.id FROM listings_fts JOIN listings l ON l.seq = listings_fts.rowid
                     WHERE listings_fts MATCH ?1 ORDER BY l.id",
                )
                .unwrap();
            stmt.query_map([words], |row| row.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(found("\"cafe\""), Vec::<i64>::new());
        assert_eq!(found("\"tea\" AND \"lamp\""), vec![1]);
        assert_eq!(found("\"oak\""), vec![2]);
        let tags: Vec<(String, i64)> = conn
            .prepare("SELECT tag, listing_seq FROM listing_tags ORDER BY tag")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(tags, vec![("lamp".to_owned(), 1), ("new".to_owned(), 1)]);
        // The schema refuses what the parsers refuse, should a bug get past them.
        for bad in [
            "UPDATE listings SET quantity = -1 WHERE id = 2",
            "UPDATE listings SET price = 0 WHERE id = 2",
            "UPDATE listings SET state = 'gone' WHERE id = 2",
            "UPDATE listings SET tags = '{}' WHERE id = 2",
        ] {
            assert!(conn.execute(bad, []).is_err(), "{bad}");
        }
    }
}
