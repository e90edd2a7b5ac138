//! Accounts and sessions: the domain types that prove input is valid, the
//! user and session queries, password hashing, and the login guard.
//! Reads take a reader connection; writes are functions run by the writer.

pub mod guard;
pub mod operator;
pub mod passwords;
mod rating;
pub mod sessions;
pub mod users;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::truncate;
pub use rating::{Rating, RatingView};

pub const USERNAME_CHARS_MIN: usize = 3;
pub const USERNAME_CHARS_MAX: usize = 32;
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Long enough for any passphrase, short enough that hashing stays bounded.
pub const PASSWORD_CHARS_MAX: usize = 256;
pub const DISPLAY_NAME_CHARS_MAX: usize = 64;

/// 3–32 of `[a-z0-9_]`, stored lowercase: usernames are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(text: &str) -> Result<Username> {
        let chars = text.chars().count();
        if !(USERNAME_CHARS_MIN..=USERNAME_CHARS_MAX).contains(&chars) {
            return Err(Error::invalid_field(
                "username",
                format!(
                    "username must be {USERNAME_CHARS_MIN}-{USERNAME_CHARS_MAX} characters, got {chars}"
                ),
            ));
        }
        if !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid_field(
                "username",
                format!(
                    "username `{}` may hold only letters a-z, digits and _",
                    truncate(text, 40)
                ),
            ));
        }
        Ok(Username(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8–256 characters of any Unicode, never truncated. Not `Debug`: a password
/// must not reach a log by accident.
pub struct Password(String);

impl Password {
    pub fn parse(field: &str, text: String) -> Result<Password> {
        let chars = text.chars().count();
        if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&chars) {
            return Err(Error::invalid_field(
                field,
                format!(
                    "password must be {PASSWORD_CHARS_MIN}-{PASSWORD_CHARS_MAX} characters, got {chars}"
                ),
            ));
        }
        Ok(Password(text))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// 1–64 characters, not blank, no control characters.
pub fn parse_display_name(text: &str) -> Result<String> {
    let chars = text.chars().count();
    if chars > DISPLAY_NAME_CHARS_MAX || text.trim().is_empty() {
        return Err(Error::invalid_field(
            "display_name",
            format!("display_name must be 1-{DISPLAY_NAME_CHARS_MAX} characters and not blank"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid_field(
            "display_name",
            "display_name may not hold control characters",
        ));
    }
    Ok(text.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
    fn from_db(text: &str) -> Role {
        if text == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
        }
    }
    fn from_db(text: &str) -> Status {
        if text == "suspended" {
            Status::Suspended
        } else {
            Status::Active
        }
    }
}

/// A user as stored, without the password hash.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub status: Status,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    /// Ratings received from reviews of finished orders.
    pub rating: Rating,
}

/// What anyone signed in may see of another user.
#[derive(Serialize)]
pub struct PublicUser<'a> {
    pub id: String,
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub created_at: String,
    pub rating: RatingView,
}

/// What a user sees of themselves, and admins of anyone.
#[derive(Serialize)]
pub struct PrivateUser<'a> {
    pub id: String,
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub role: Role,
    pub status: Status,
    pub created_at: String,
    pub last_login_at: Option<String>,
}

impl User {
    pub fn public(&self) -> PublicUser<'_> {
        PublicUser {
            id: self.id.to_string(),
            username: &self.username,
            display_name: self.display_name.as_deref(),
            created_at: crate::clock::rfc3339(self.created_at),
            rating: self.rating.view(),
        }
    }

    pub fn private(&self) -> PrivateUser<'_> {
        PrivateUser {
            id: self.id.to_string(),
            username: &self.username,
            display_name: self.display_name.as_deref(),
            role: self.role,
            status: self.status,
            created_at: crate::clock::rfc3339(self.created_at),
            last_login_at: self.last_login_at.map(crate::clock::rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_and_lowercased() {
        assert_eq!(Username::parse("Alice_9").unwrap().as_str(), "alice_9");
        for bad in [
            "ab",
            "a".repeat(33).as_str(),
            "al ice",
            "alicé",
            "al-ice",
            "",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(
            Password::parse("password", "ééééééé".into()).is_err(),
            "7 chars, 14 bytes"
        );
        assert!(Password::parse("password", "éééééééé".into()).is_ok());
        assert!(Password::parse("password", "x".repeat(256)).is_ok());
        assert!(Password::parse("password", "x".repeat(257)).is_err());
    }
}
