//! `POST /sessions` (login) and `DELETE /sessions/current` (logout).

use serde::Deserialize;
use serde_json::json;

use super::{Params, auth, json, respond};
use crate::accounts::{Password, Status, Username, sessions, users};
use crate::app::App;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{Reply, Request, Response};

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
    let (hasher, writer) = (app.hasher.clone(), app.store.writer.clone());
    let ttl_s = i64::try_from(app.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    Ok(Reply::Later(Box::new(move |responder| {
        hasher.verify(password, phc, move |matched| {
            // A suspended account answers exactly like a wrong password, so
            // the answer never tells whether a password was right.
            let (user, verified_hash) = match (matched, user) {
                (Err(e), _) => return responder.send(respond::error(e)),
                (Ok(true), Some((user, phc))) if user.status == Status::Active => (user, phc),
                _ => {
                    attempt.failed();
                    return responder.send(respond::error(Error::InvalidCredentials));
                }
            };
            attempt.succeeded();
            let (token, hash) = match sessions::new_token() {
                Ok(pair) => pair,
                Err(e) => return responder.send(respond::error(e)),
            };
            let now = clock::unix_seconds();
            writer.submit(
                // Created only if the hash just verified is still the user's
                // and they are still active (a change may have committed
                // meanwhile): otherwise 401 like a wrong password.
                move |tx| {
                    sessions::create(tx, user.id, &verified_hash, &hash, now, ttl_s)
                        .map(|expires_at| (user.clone(), expires_at))
                },
                move |result| {
                    responder.send_with(move || match result {
                        Ok((mut user, expires_at)) => {
                            user.last_login_at = Some(now);
                            respond::json(
                                201,
                                &json!({"token": token, "expires_at": clock::rfc3339(expires_at), "user": user.private()}),
                            )
                        }
                        Err(e) => respond::error(e),
                    })
                },
            );
        });
    })))
}

pub fn logout(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    Ok(app.write(
        move |tx| sessions::end(tx, &caller.token),
        |()| Response::new(204),
    ))
}
