//! Who is calling: `Authorization: Bearer TOKEN` to a live session of an
//! active user. Anything else is 401, never 5xx, whatever the header holds.

use std::sync::Arc;

use crate::accounts::operator::Freshness;
use crate::accounts::sessions::{self, TokenHash};
use crate::accounts::{Role, Status, User, users};
use crate::app::App;
use crate::error::{Error, Result};
use crate::http::Request;

pub struct Caller {
    /// Shared with the profile cache: a request clones no user.
    pub user: Arc<User>,
    pub token: TokenHash,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

/// The signed-in caller, or 401: a live session of an active user. Both
/// lookups go through caches that every logout, suspension and password
/// change invalidates before it is acknowledged, and that an operator's
/// change from the command line clears (`accounts::operator`); while the
/// server cannot tell whether such a change happened, they are read from
/// the database instead.
pub fn caller(app: &App, request: &Request) -> Result<Caller> {
    let token = bearer_token(request)?.ok_or(Error::Unauthenticated)?;
    let hash = sessions::hash_presented(token).ok_or(Error::Unauthenticated)?;
    // Operator changes from the command line drop cached entries first.
    let freshness = app
        .operator
        .sync(&app.store.readers, &app.caches, &app.guard);
    let load_session = || app.read(|conn| sessions::lookup(conn, &hash));
    let session = match freshness {
        Freshness::Trusted => app.caches.sessions.get_or_load_some(&hash, load_session)?,
        Freshness::ReadThrough => load_session()?,
    }
    .filter(|s| s.expires_at > crate::clock::unix_seconds())
    .ok_or(Error::Unauthenticated)?;
    let user = match freshness {
        Freshness::Trusted => profile(app, session.user_id)?,
        Freshness::ReadThrough => app
            .read(|conn| users::by_id(conn, session.user_id))?
            .map(Arc::new),
    }
    .filter(|u| u.status == Status::Active)
    .ok_or(Error::Unauthenticated)?;
    // For the access log; a second lookup of one request finds the same user.
    let _ = request.user_id.set(user.id);
    Ok(Caller { user, token: hash })
}

/// A user by id through the profile cache.
pub fn profile(app: &App, user_id: i64) -> Result<Option<Arc<User>>> {
    app.caches.profiles.get_or_load_some(&user_id, || {
        Ok(app.read(|conn| users::by_id(conn, user_id))?.map(Arc::new))
    })
}

/// The caller if an admin: 401 when not signed in, 403 when not an admin.
pub fn admin(app: &App, request: &Request) -> Result<Caller> {
    let caller = caller(app, request)?;
    if !caller.is_admin() {
        return Err(Error::Forbidden);
    }
    Ok(caller)
}

/// The token of `Authorization: Bearer TOKEN` (scheme in any case):
/// `Ok(None)` only when no Authorization header was sent. One that was sent
/// but is unusable (not UTF-8, repeated, another scheme) is 401 at once, so
/// no route can mistake bad credentials for an anonymous call.
pub fn bearer_token(request: &Request) -> Result<Option<&str>> {
    let Some(value) = request
        .header("authorization")
        .map_err(|_| Error::Unauthenticated)?
    else {
        return Ok(None);
    };
    let (scheme, token) = value.trim().split_once(' ').ok_or(Error::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Unauthenticated);
    }
    Ok(Some(token.trim()))
}

/// `found` if the caller may see it: one of its parties (`is_party`) or an
/// admin; else 404, the answer for something that does not exist, so its
/// existence is not revealed.
pub fn party_or_admin<T>(
    caller: &Caller,
    found: Option<T>,
    is_party: impl FnOnce(&T, i64) -> bool,
) -> Result<T> {
    found
        .filter(|item| caller.is_admin() || is_party(item, caller.user.id))
        .ok_or(Error::NotFound)
}
