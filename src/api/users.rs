//! Users: registration, profiles, bulk reads, search, admin updates, stats.

use serde::Deserialize;
use serde_json::json;

use super::deferred::Deferred;
use super::{Params, auth, json, query, respond};
use crate::accounts::users::{self, BULK_IDS_MAX, BULK_UPDATES_MAX, Changes};
use crate::accounts::{Password, Role, Status, Username, parse_display_name, sessions};
use crate::app::App;
use crate::clock;
use crate::error::{Error, Result};
use crate::http::{Reply, Request};
use crate::ids;
use crate::store::writer::Weight;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    display_name: Option<String>,
}

/// `POST /users`: open to anyone unless SOUK_OPEN_REGISTRATION=false. Every
/// attempt counts toward the per-address limit, a refused one too, so a
/// script cannot keep the password hasher busy with sign-ups.
pub fn register(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    app.registrations.count(request.client)?;
    if !app.config.open_registration {
        auth::admin(app, request)?;
    }
    let body: NewUser = json::body(request)?;
    let username = Username::parse(&body.username)?;
    let password = Password::parse("password", body.password)?;
    let display_name = body
        .display_name
        .as_deref()
        .map(parse_display_name)
        .transpose()?;
    // Fast answer for a taken name before paying for a hash; the insert
    // checks again, so a race still ends in 409.
    if app
        .store
        .readers
        .read(|conn| users::by_username_with_hash(conn, &username))?
        .is_some()
    {
        return Err(taken(&username));
    }
    let now = clock::unix_seconds();
    Ok(Deferred::hash(&app.hasher, password)
        .then_write(&app.store.writer, Weight::ONE, move |hash, tx| {
            let name = display_name.as_deref();
            users::insert(tx, &username, name, hash, Role::User, now)
        })
        .render(|user| respond::wrapped(201, "user", &user.private())))
}

fn taken(username: &Username) -> Error {
    Error::Conflict {
        code: "username_taken",
        message: format!("username `{}` is taken", username.as_str()),
    }
}

/// `GET /users/me`: the caller with private fields.
pub fn me(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    Ok(Reply::Now(respond::wrapped(
        200,
        "user",
        &caller.user.private(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MyChanges {
    display_name: Option<String>,
    password: Option<String>,
    current_password: Option<String>,
}

/// `PATCH /users/me`: display name, and password given the current one; a
/// new password ends the caller's other sessions. Checking the current
/// password is a login in all but name: it counts toward the per-address
/// login limit, a wrong one is a failed login for the username, and while
/// the username is locked the check is refused (429), so a stolen session
/// cannot guess the password.
pub fn update_me(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    let caller = auth::caller(app, request)?;
    let body: MyChanges = json::body(request)?;
    let display_name = body
        .display_name
        .as_deref()
        .map(parse_display_name)
        .transpose()?;
    let changes = Changes {
        display_name,
        ..Changes::default()
    };
    let user_id = caller.user.id;
    let Some(new_password) = body.password else {
        if body.current_password.is_some() {
            return Err(Error::invalid_field(
                "current_password",
                "current_password goes with password",
            ));
        }
        return Ok(app.write(
            Weight::ONE,
            move |tx| users::update(tx, user_id, &changes),
            |user| respond::wrapped(200, "user", &user.private()),
        ));
    };
    let new_password = Password::parse("password", new_password)?;
    let current = body.current_password.ok_or_else(|| {
        Error::invalid_field(
            "current_password",
            "current_password is required to change the password",
        )
    })?;
    app.guard.count_attempt(request.client)?;
    // A current password that could never be valid is wrong without a hash;
    // like such a login it tells nothing, so it is not a failed guess.
    let current =
        Password::parse("current_password", current).map_err(|_| wrong_current_password())?;
    let attempt = app.guard.begin(&caller.user.username, request.client)?;
    let phc = app
        .store
        .readers
        .read(|conn| users::password_hash(conn, user_id))?;
    let (keep, verified_hash) = (caller.token, phc.clone().unwrap_or_default());
    let hasher = app.hasher.clone();
    Ok(Deferred::verify(&app.hasher, current, phc)
        // No verdict (say the hash queue was full) skips this step: the
        // attempt's drop counts it neither way.
        .and_then(move |matched| {
            if !matched {
                attempt.failed();
                return Err(wrong_current_password());
            }
            attempt.succeeded();
            Ok(())
        })
        .then(move |()| Deferred::hash(&hasher, new_password))
        .then_write(&app.store.writer, Weight::ONE, move |hash, tx| {
            // A change that committed since the check (`souk user passwd`,
            // another PATCH) wins: the current password given is no longer
            // the current one.
            if !users::replace_password_hash(tx, user_id, &verified_hash, hash)? {
                return Err(wrong_current_password());
            }
            sessions::end_all(tx, user_id, Some(&keep))?;
            users::update(tx, user_id, &changes)
        })
        .render(|user| respond::wrapped(200, "user", &user.private())))
}

fn wrong_current_password() -> Error {
    Error::WrongPassword {
        field: "current_password",
    }
}

/// `GET /users/{id}`: a public profile.
pub fn get(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::caller(app, request)?;
    let id = params.id()?;
    let user = auth::profile(app, id)?.ok_or(Error::NotFound)?;
    Ok(Reply::Now(respond::wrapped(200, "user", &user.public())))
}

/// `GET /users?ids=…` (bulk read) or `GET /users?q=…` (prefix search).
pub fn list(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::caller(app, request)?;
    match (query::param(request, "ids")?, query::param(request, "q")?) {
        (Some(list), None) => {
            // Paging belongs to the search, but bad values are still refused.
            query::limit(request)?;
            if let Some(after) = query::param(request, "after")? {
                search_term("after", &after)?;
            }
            by_ids(app, &list)
        }
        (None, Some(prefix)) => search(app, request, &prefix),
        _ => Err(Error::invalid_field(
            "ids",
            "give exactly one of ids= or q=",
        )),
    }
}

fn by_ids(app: &App, list: &str) -> Result<Reply> {
    let ids = query::id_list("ids", list, BULK_IDS_MAX)?;
    let found = app.store.readers.read(|conn| users::by_ids(conn, &ids))?;
    let users: Vec<_> = found.iter().map(|u| u.public()).collect();
    Ok(Reply::Now(respond::json(200, &json!({"users": users}))))
}

fn search(app: &App, request: &Request, prefix: &str) -> Result<Reply> {
    let limit = query::limit(request)?;
    let prefix = search_term("q", prefix)?;
    let after = query::param(request, "after")?
        .map(|a| search_term("after", &a))
        .transpose()?;
    let mut found = app
        .store
        .readers
        .read(|conn| users::search(conn, &prefix, after.as_deref(), limit + 1))?;
    let next = query::next_cursor(&mut found, limit, |u| u.username.clone());
    let users: Vec<_> = found.iter().map(|u| u.public()).collect();
    Ok(Reply::Now(respond::json(
        200,
        &json!({"users": users, "next": next}),
    )))
}

/// A username prefix or cursor: up to 32 of `[a-z0-9_]`, any case.
fn search_term(field: &str, text: &str) -> Result<String> {
    let ok = text.chars().count() <= crate::accounts::USERNAME_CHARS_MAX
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(Error::invalid_field(
            field,
            format!("{field} must be up to 32 of a-z, 0-9 and _"),
        ));
    }
    Ok(text.to_ascii_lowercase())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminChanges {
    role: Option<Role>,
    status: Option<Status>,
    display_name: Option<String>,
}

impl AdminChanges {
    fn parse(self) -> Result<Changes> {
        let display_name = self
            .display_name
            .as_deref()
            .map(parse_display_name)
            .transpose()?;
        Ok(Changes {
            role: self.role,
            status: self.status,
            display_name,
        })
    }
}

/// `PATCH /admin/users/{id}`: role, status, display name. Suspending ends
/// the user's sessions in the same transaction.
pub fn admin_update(app: &App, request: &Request, params: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let id = params.id()?;
    let changes = json::body::<AdminChanges>(request)?.parse()?;
    Ok(app.write(
        Weight::ONE,
        move |tx| users::update(tx, id, &changes),
        |user| respond::wrapped(200, "user", &user.private()),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkItem {
    id: String,
    role: Option<Role>,
    status: Option<Status>,
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkUpdate {
    updates: json::RawItems,
}

/// `POST /admin/users/bulk-update`: all or nothing, in one write job.
pub fn bulk_update(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let body: BulkUpdate = json::body(request)?;
    if body.updates.is_empty() || body.updates.len() > BULK_UPDATES_MAX {
        return Err(Error::invalid_field(
            "updates",
            format!("updates takes 1-{BULK_UPDATES_MAX} items"),
        ));
    }
    let updates: Vec<(i64, Changes)> = json::items::<BulkItem>(&body.updates)?
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let id = ids::parse_id("id", &item.id).map_err(|e| e.at_index(index))?;
            let changes = AdminChanges {
                role: item.role,
                status: item.status,
                display_name: item.display_name,
            };
            Ok((id, changes.parse().map_err(|e| e.at_index(index))?))
        })
        .collect::<Result<_>>()?;
    Ok(app.write(
        Weight::ONE,
        move |tx| {
            for (index, (id, changes)) in updates.iter().enumerate() {
                users::update(tx, *id, changes).map_err(|e| e.at_index(index))?;
            }
            Ok(updates.len())
        },
        |updated| respond::json(200, &json!({"updated": updated})),
    ))
}

/// `GET /admin/stats/users`: one aggregate query, cached STATS_CACHE_TIMEOUT.
pub fn stats(app: &App, request: &Request, _: &Params) -> Result<Reply> {
    auth::admin(app, request)?;
    let stats = app.user_stats.get_or_load(|| {
        app.store
            .readers
            .read(|conn| users::stats(conn, clock::unix_seconds()))
    })?;
    Ok(Reply::Now(respond::json(200, &stats)))
}
