//! Searching active listings: the FTS5 MATCH expression built from a
//! client's words (no query syntax ever reaches the engine), filters,
//! sorts, and keyset pages. The SQL is put together from fixed fragments
//! and numbered placeholders only; every value, the MATCH expression too,
//! is a bound parameter.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::{COLUMNS, Listing, Tag, from_row};
use crate::error::{Error, Result};

/// Characters of `q`: a long product name and then some; bounds the
/// number of words (at most half of it) ANDed in one MATCH.
pub const QUERY_CHARS_MAX: usize = 200;

/// BM25 weights of the indexed columns (title, description): a word in the
/// title counts ten times one in the description.
const RANK: &str = "bm25(listings_fts, 10.0, 1.0)";

/// The order of a search's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Best BM25 score first, newest first among equal scores. Only with
    /// words; without, it is `Newest`.
    Relevance,
    Newest,
    /// By currency, then price, then oldest first among equal prices.
    PriceAsc,
    /// By currency, then highest price, then newest first among equal prices.
    PriceDesc,
}

impl Sort {
    pub fn parse(text: &str) -> Result<Sort> {
        match text {
            "relevance" => Ok(Sort::Relevance),
            "newest" => Ok(Sort::Newest),
            "price_asc" => Ok(Sort::PriceAsc),
            "price_desc" => Ok(Sort::PriceDesc),
            _ => Err(Error::invalid_field(
                "sort",
                "sort must be relevance, newest, price_asc or price_desc",
            )),
        }
    }
}

/// The FTS5 expression for `q`, or None when `q` has no words. Words are
/// runs of Unicode letters and digits; everything else separates them.
/// Each word becomes a quoted string (letters and digits hold no `"`), so
/// `OR`, `NEAR`, `*`, `-`, `:` and the like are plain text; all words must
/// match, and the last also matches as a prefix (`"ledg" *`).
pub fn match_expression(q: &str) -> Option<String> {
    let words: Vec<&str> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let (last, rest) = words.split_last()?;
    let mut expression: Vec<String> = rest.iter().map(|w| format!("\"{w}\"")).collect();
    expression.push(format!("\"{last}\" *"));
    Some(expression.join(" AND "))
}

/// What a search asks for, parsed.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// From `match_expression`.
    pub words: Option<String>,
    pub seller: Option<i64>,
    pub currency: Option<String>,
    pub tag: Option<Tag>,
    /// Inclusive bounds in minor units of `currency`.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    /// The sort as asked; `effective_sort` resolves the default.
    pub sort: Option<Sort>,
}

impl Query {
    /// `relevance` with words and `newest` without, unless asked otherwise;
    /// relevance without words is newest (every score would be equal).
    pub fn effective_sort(&self) -> Sort {
        match (self.sort, &self.words) {
            (None | Some(Sort::Relevance), Some(_)) => Sort::Relevance,
            (None | Some(Sort::Relevance), None) => Sort::Newest,
            (Some(sort), _) => sort,
        }
    }

    /// The search-page cache's key: everything that decides the page, the
    /// sort as it takes effect (so `sort=relevance` and no sort share one).
    /// Debug forms quote strings, so no two searches share a key.
    pub fn cache_key(&self, after: Option<i64>, limit: usize) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{limit}",
            self.words,
            self.seller,
            self.currency,
            self.tag.as_ref().map(Tag::as_str),
            self.min_price,
            self.max_price,
            self.effective_sort(),
            after,
        )
    }
}

/// Numbered parameters as the SQL is written: `bind` returns `?N` for a
/// value, so fragments and their values cannot drift apart.
#[derive(Default)]
struct Binds(Vec<Value>);

impl Binds {
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.0.push(value.into());
        format!("?{}", self.0.len())
    }
}

/// Where the page before ended: the listing `after`'s sort key.
struct Key {
    seq: i64,
    currency: String,
    price: i64,
    score: f64,
}

/// The sort key of listing `after` under `query`; `UnknownCursor` when no
/// such listing exists, it is not active, or it no longer matches the
/// words. Only active listings are cursors: a paused or closed one answers
/// exactly like an id that never existed, or a search could be used to
/// learn a hidden listing's existence, words (by prefix) and price (by
/// where the next page starts). A reader whose cursor listing was paused
/// since starts over.
fn key(conn: &Connection, query: &Query, after: i64) -> Result<Key> {
    let found = conn
        .prepare_cached(
            "SELECT seq, currency, price FROM listings WHERE id = ?1 AND state = 'active'",
        )?
        .query_row([after], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let (seq, currency, price) = found.ok_or(Error::UnknownCursor)?;
    let score = match (&query.words, query.effective_sort()) {
        (Some(words), Sort::Relevance) => {
            let sql = format!(
                "SELECT {RANK} FROM listings_fts WHERE listings_fts MATCH ?1 AND rowid = ?2"
            );
            conn.prepare_cached(&sql)?
                .query_row(rusqlite::params![words, seq], |row| row.get(0))
                .optional()?
                .ok_or(Error::UnknownCursor)?
        }
        _ => 0.0,
    };
    Ok(Key {
        seq,
        currency,
        price,
        score,
    })
}

/// One page of active listings matching `query`, after the listing `after`
/// (its id, as the previous page's `next`), at most `limit` of them. Reads
/// in one transaction, so the cursor's key and the page come from one
/// snapshot.
pub fn page(
    conn: &Connection,
    query: &Query,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<Listing>> {
    let snapshot = conn.unchecked_transaction()?;
    let key = after.map(|id| key(&snapshot, query, id)).transpose()?;
    let mut binds = Binds::default();
    let sort = query.effective_sort();
    let (from, score, seq) = source(query, &mut binds);
    let filters = conditions(query, &mut binds, key, sort, score, seq);
    let order = match sort {
        Sort::Relevance => format!("{score}, l.seq DESC"),
        Sort::Newest => format!("{seq} DESC"),
        Sort::PriceAsc => "l.currency, l.price, l.seq".to_owned(),
        Sort::PriceDesc => "l.currency, l.price DESC, l.seq DESC".to_owned(),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM {from} WHERE {} ORDER BY {order} LIMIT {}",
        filters.join(" AND "),
        binds.bind(limit as i64)
    );
    let listings = {
        let mut stmt = snapshot.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(binds.0), from_row)?;
        rows.collect::<rusqlite::Result<Vec<Listing>>>()?
    };
    snapshot.finish()?;
    Ok(listings)
}

/// What a page is read from (the FROM clause), with the expressions of its
/// relevance score and of the seq that orders `newest`.
fn source(query: &Query, binds: &mut Binds) -> (String, &'static str, &'static str) {
    let (from, score) = match &query.words {
        Some(words) => (
            format!(
                "(SELECT rowid AS seq, {RANK} AS score FROM listings_fts
                  WHERE listings_fts MATCH {}) AS hits
                 JOIN listings l ON l.seq = hits.seq",
                binds.bind(words.clone())
            ),
            "hits.score",
        ),
        None => ("listings l".to_owned(), "0.0"),
    };
    // With a tag, the tag's index rows drive the query: for `newest` they
    // are read in seq order (as `t.listing_seq`, equal to `l.seq`), so a
    // page costs its own rows, however rare or common the tag.
    match &query.tag {
        Some(tag) => (
            format!(
                "{from} JOIN listing_tags t ON t.listing_seq = l.seq AND t.tag = {}",
                binds.bind(tag.as_str().to_owned())
            ),
            score,
            "t.listing_seq",
        ),
        None => (from, score, "l.seq"),
    }
}

/// The WHERE conditions: active, the query's filters, and after the
/// cursor's `key` in `sort` (with `source`'s score and seq expressions).
fn conditions(
    query: &Query,
    binds: &mut Binds,
    key: Option<Key>,
    sort: Sort,
    score: &str,
    seq: &str,
) -> Vec<String> {
    let mut filters = vec!["l.state = 'active'".to_owned()];
    if let Some(seller) = query.seller {
        filters.push(format!("l.seller = {}", binds.bind(seller)));
    }
    if let Some(currency) = &query.currency {
        filters.push(format!("l.currency = {}", binds.bind(currency.clone())));
    }
    if let Some(min) = query.min_price {
        filters.push(format!("l.price >= {}", binds.bind(min)));
    }
    if let Some(max) = query.max_price {
        filters.push(format!("l.price <= {}", binds.bind(max)));
    }
    if let Some(key) = key {
        filters.push(after_key(binds, sort, score, seq, key));
    }
    filters
}

/// The condition "comes after `key` in `sort`"; `seq` is the column that
/// orders `newest`.
fn after_key(binds: &mut Binds, sort: Sort, score: &str, seq: &str, key: Key) -> String {
    match sort {
        Sort::Relevance => {
            let s = binds.bind(key.score);
            let q = binds.bind(key.seq);
            format!("({score} > {s} OR ({score} = {s} AND l.seq < {q}))")
        }
        Sort::Newest => format!("{seq} < {}", binds.bind(key.seq)),
        Sort::PriceAsc => {
            let c = binds.bind(key.currency);
            let p = binds.bind(key.price);
            let q = binds.bind(key.seq);
            format!("(l.currency, l.price, l.seq) > ({c}, {p}, {q})")
        }
        Sort::PriceDesc => {
            let c = binds.bind(key.currency);
            let p = binds.bind(key.price);
            let q = binds.bind(key.seq);
            format!(
                "(l.currency > {c} OR (l.currency = {c} AND \
                 (l.price < {p} OR (l.price = {p} AND l.seq < {q}))))"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_anded_and_the_last_is_a_prefix() {
        assert_eq!(match_expression(""), None);
        assert_eq!(match_expression(" \"*-:^()' "), None);
        assert_eq!(match_expression("ledg"), Some("\"ledg\" *".into()));
        assert_eq!(
            match_expression("a OR b"),
            Some("\"a\" AND \"OR\" AND \"b\" *".into())
        );
        assert_eq!(
            match_expression("NEAR(a b)"),
            Some("\"NEAR\" AND \"a\" AND \"b\" *".into())
        );
        assert_eq!(
            match_expression("Café-au-lait"),
            Some("\"Café\" AND \"au\" AND \"lait\" *".into())
        );
    }
}
