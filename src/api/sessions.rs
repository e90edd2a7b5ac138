//! `POST /sessions` (login) and `DELETE /sessions/current` (logout).

use serde::Deserialize;
use serde_json::json;

use super::deferred::Deferred;
use super::{Params, auth, json, respond};
use crate::accounts::guard::Attempt;
use crate::accounts::sessions::TokenHash;
use crate::accounts::{Password, Status, User, Username, sessions, users};
use crate::app::App;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{Reply, Request, Response};
use crate::store::writer::Weight;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

/// Checks the password off the request workers, then opens a session.
/// Unknown user and wrong password cost the same hash and get the same body.
pub fn login(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    app.guard.count_attempt(request.client)?;
    let body: Credentials = json::body(request)?;
    // A username or password that could never be valid is simply wrong.
    let (Ok(username), Ok(password)) = (
        Username::parse(&body.username),
        Password::parse("password", body.password),
    ) else {
        return Err(Error::InvalidCredentials);
    };
    // An operator's `souk user unlock` lifts a lockout before it is checked
    // (the user and the hash are read from the database, never a cache).
    app.operator
        .sync(&app.store.readers, &app.caches, &app.guard);
    let attempt = app.guard.begin(username.as_str(), request.client)?;
    let found = app
        .store
        .readers
        .read(|conn| users::by_username_with_hash(conn, &username))?;
    let (user, phc) = match found {
        Some((user, phc)) => (Some((user, phc.clone())), Some(phc)),
        None => (None, None),
    };
    let ttl_s = i64::try_from(app.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(Deferred::verify(&app.hasher, password, phc)
        .and_then(move |matched| checked(attempt, matched, user))
        // Created only if the hash just verified is still the user's and
        // they are still active (a change may have committed meanwhile):
        // otherwise 401 like a wrong password.
        .then_write(&app.store.writer, Weight::ONE, move |opening, tx| {
            let Opening {
                user,
                verified_hash,
                token_hash,
                now,
                ..
            } = opening;
            sessions::create(tx, user.id, verified_hash, token_hash, *now, ttl_s)
                .map(|expires_at| (opening.clone(), expires_at))
        })
        .render(|(opening, expires_at)| opened(opening, expires_at)))
}

/// The password check is back: `user` (with the hash it was checked
/// against) and `matched` let the login on only for an active account,
/// with a new token; anything else is counted as a failed attempt and
/// answers 401.
fn checked(attempt: Attempt, matched: bool, user: Option<(User, String)>) -> Result<Opening> {
    // A suspended account answers exactly like a wrong password, so the
    // answer never tells whether a password was right.
    let (user, verified_hash) = match (matched, user) {
        (true, Some((user, phc))) if user.status == Status::Active => (user, phc),
        _ => {
            attempt.failed();
            return Err(Error::InvalidCredentials);
        }
    };
    attempt.succeeded();
    let (token, token_hash) = sessions::new_token()?;
    let now = clock::unix_seconds();
    Ok(Opening {
        user,
        verified_hash,
        token,
        token_hash,
        now,
    })
}

/// The 201 of a login: its token, when it expires, and the user as they
/// see themselves (signed in just now).
fn opened(opening: Opening, expires_at: i64) -> Response {
    let Opening {
        mut user,
        token,
        now,
        ..
    } = opening;
    user.last_login_at = Some(now);
    respond::json(
        201,
        &json!({"token": token, "expires_at": clock::rfc3339(expires_at), "user": user.private()}),
    )
}

/// A login whose password checked out: what its session's write and the
/// answer need.
#[derive(Clone)]
struct Opening {
    user: User,
    verified_hash: String,
    token: String,
    token_hash: TokenHash,
    now: i64,
}

pub fn logout(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    Ok(app.write(
        Weight::ONE,
        move |tx| sessions::end(tx, &caller.token),
        |()| Response::new(204),
    ))
}
