//! Query-string parameters: percent-decoded, checked, named in errors.

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};
use crate::http::Request;

/// Default and largest page size of a list (docs/api.md, Paging).
pub const PAGE_DEFAULT: usize = 20;
pub const PAGE_MAX: usize = 100;

/// The decoded value of `name`, if present.
pub fn param(request: &Request, name: &str) -> Result<Option<String>> {
    let Some(raw) = request.query_param(name) else {
        return Ok(None);
    };
    let plus_as_space = raw.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|s| Some(s.into_owned()))
        .map_err(|_| Error::invalid_field(name, format!("{name} is not valid UTF-8")))
}

/// `?after=`: an id cursor (the previous page's `next`), if present.
pub fn after_id(request: &Request) -> Result<Option<i64>> {
    param(request, "after")?
        .map(|a| crate::ids::parse_id("after", &a))
        .transpose()
}

/// A comma-separated list of 1..=`max` ids in parameter `field` (empty
/// items skipped): every item is checked first, then the count.
pub fn id_list(field: &str, list: &str, max: usize) -> Result<Vec<i64>> {
    let ids: Vec<i64> = list
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| crate::ids::parse_id(field, s))
        .collect::<Result<_>>()?;
    if ids.is_empty() || ids.len() > max {
        return Err(Error::invalid_field(
            field,
            format!("{field} takes 1-{max} ids"),
        ));
    }
    Ok(ids)
}

/// `?limit=`: 1..=100 in plain digits, default 20.
pub fn limit(request: &Request) -> Result<usize> {
    match param(request, "limit")? {
        None => Ok(PAGE_DEFAULT),
        Some(text) => Some(text)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<usize>().ok())
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| Error::invalid_field("limit", format!("limit must be 1-{PAGE_MAX}"))),
    }
}

/// Cuts a page fetched with `limit + 1` items back to `limit`; the extra
/// item only says that there is a next page, whose cursor (`next`) is the
/// last shown item's, as `cursor` writes it.
pub fn next_cursor<T>(
    page: &mut Vec<T>,
    limit: usize,
    cursor: impl Fn(&T) -> String,
) -> Option<String> {
    if page.len() <= limit {
        return None;
    }
    page.truncate(limit);
    page.last().map(cursor)
}
