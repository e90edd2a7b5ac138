//! What the database file is, told before anything opens it for writing:
//! a missing directory, a directory, a permission problem, a read-only file
//! or file system, a file that is not SQLite, another application's SQLite
//! file, or a souk database newer than this binary are each refused with one
//! `Error::Setup` line naming the path and the cause. Whose file it is is
//! told before any connection that could write: from its 100-byte header
//! read with std::fs (magic string, application id), and for a file without
//! souk's id from its schema read out of the main file alone (`immutable`).
//! So another application's file is never recovered, rolled back or
//! checkpointed into, and no file is created beside it.

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::migrate::SCHEMA_VERSION;
use crate::error::{Error, Result};

/// `PRAGMA application_id` of a souk database ("souk" in ASCII), set by the
/// first migration run on it. Databases from before it carry 0.
pub const APPLICATION_ID: i32 = 0x736f_756b;

/// A database file that may be opened for writing.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// The absolute path (symlinks resolved when the file exists).
    pub absolute: PathBuf,
    /// No file yet: opening creates a new, empty database.
    pub created: bool,
    /// Its schema version (0 for a new or empty file).
    pub version: u32,
}

/// Checks that `path` can be a souk database opened for writing (by `souk
/// serve`, `migrate` and the `user` commands): an existing souk database, an
/// empty file, or a new file in a writable directory.
pub fn for_writing(path: &Path) -> Result<Preflight> {
    let absolute = absolute(path);
    let dir = directory_of(&absolute)?;
    let created = match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_dir() => return Err(is_a_directory(&absolute)),
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => return Err(cannot(&absolute, &e)),
    };
    if !created {
        std::fs::File::open(&absolute).map_err(|e| cannot_read(&absolute, &e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&absolute)
            .map_err(|e| cannot_write(&absolute, &e))?;
    }
    // New files, the -wal and -shm files and the lock file live beside it.
    access(&dir, libc::W_OK | libc::X_OK).map_err(|e| {
        let what = if created { "create" } else { "write beside" };
        Error::Setup(format!(
            "cannot {what} the database {}: the directory {} is {}",
            absolute.display(),
            dir.display(),
            why_not_writable(&e)
        ))
    })?;
    let version = if created {
        0
    } else {
        // Told from the file's own bytes first: another application's file
        // never gets a connection that could recover or checkpoint it.
        vet(&absolute)?;
        let conn = open_for_reading(&absolute, Reading::Writable)?;
        souk_version(&conn, &absolute)?
    };
    let absolute = std::fs::canonicalize(&absolute).unwrap_or(absolute);
    Ok(Preflight {
        absolute,
        created,
        version,
    })
}

/// Checks that `path` is an existing souk database that can be read, and
/// returns its absolute path (for `souk check`, `backup`, `user list`).
pub fn for_reading(path: &Path) -> Result<PathBuf> {
    let absolute = absolute(path);
    match std::fs::metadata(&absolute) {
        Ok(meta) if meta.is_dir() => return Err(is_a_directory(&absolute)),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = directory_of(&absolute)?;
            return Err(Error::Setup(format!(
                "no database at {} (the directory {} holds no such file)",
                absolute.display(),
                dir.display()
            )));
        }
        Err(e) => return Err(cannot(&absolute, &e)),
    }
    std::fs::File::open(&absolute).map_err(|e| cannot_read(&absolute, &e))?;
    Ok(std::fs::canonicalize(&absolute).unwrap_or(absolute))
}

/// How a connection that only reads opens an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Read-write without create (reads only): where the user may write the
    /// file and its directory. With SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE set,
    /// the -wal and -shm files it made stay behind (nothing is checkpointed
    /// into the file).
    Writable,
    /// The `mode=ro` URI: never writes the file, but may leave -wal and -shm
    /// files that it cannot remove.
    ReadOnly,
    /// The `immutable=1` URI: no locks, no -shm (for read-only media that
    /// no one is writing).
    Immutable,
}

impl Reading {
    /// `Writable` when the user may write both the file and its directory.
    pub(super) fn best_for(absolute: &Path) -> Reading {
        let dir = absolute.parent().unwrap_or(Path::new("/"));
        if access(absolute, libc::W_OK).is_ok() && access(dir, libc::W_OK | libc::X_OK).is_ok() {
            Reading::Writable
        } else {
            Reading::ReadOnly
        }
    }
}

/// A connection to an existing file that reads it, opened `how`.
pub(super) fn open_for_reading(absolute: &Path, how: Reading) -> Result<Connection> {
    try_open_for_reading(absolute, how).map_err(|e| sqlite(absolute, e))
}

/// `open_for_reading` with SQLite's own error, for callers that branch on
/// its code. A read-write connection is set not to checkpoint when it
/// closes: it only reads, and must not copy a WAL into the file either.
pub(super) fn try_open_for_reading(absolute: &Path, how: Reading) -> rusqlite::Result<Connection> {
    let tail = match how {
        Reading::Writable => "mode=rw",
        Reading::ReadOnly => "mode=ro",
        Reading::Immutable => "immutable=1",
    };
    let uri = format!("file:{}?{tail}", uri_path(absolute));
    let access = if how == Reading::Writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    };
    let flags = access | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&uri, flags)?;
    if how == Reading::Writable {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    }
    // Opening reads nothing; this does, so a bad file is found here.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    })?;
    Ok(conn)
}

/// The first bytes of a SQLite database file (SQLite's file format, "The
/// Database Header"): the magic string, then big-endian fields.
const HEADER_BYTES: usize = 100;
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Offset of `PRAGMA application_id` in the header.
const APPLICATION_ID_AT: usize = 68;

/// What a database file's header says about whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// An empty file: a new database.
    Empty,
    /// souk's application id.
    Souk,
    /// Application id 0: a souk database from before the id, or another
    /// application's file; its schema must tell.
    Unmarked,
}

/// Reads the header with std::fs (no SQLite): not SQLite, or another
/// application's id, is refused here.
pub(super) fn read_header(absolute: &Path) -> Result<Header> {
    use std::io::Read;
    let file = std::fs::File::open(absolute).map_err(|e| cannot_read(absolute, &e))?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    file.take(HEADER_BYTES as u64)
        .read_to_end(&mut header)
        .map_err(|e| cannot_read(absolute, &e))?;
    if header.is_empty() {
        return Ok(Header::Empty);
    }
    if header.len() < HEADER_BYTES || !header.starts_with(MAGIC) {
        return Err(not_sqlite(absolute));
    }
    let field = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
    let application_id = i32::from_be_bytes(field(APPLICATION_ID_AT));
    if application_id == APPLICATION_ID {
        return Ok(Header::Souk);
    }
    if application_id != 0 {
        return Err(foreign(
            absolute,
            format!("application_id {application_id:#x}"),
        ));
    }
    Ok(Header::Unmarked)
}

/// A non-empty `-wal` or `-journal` file beside the database: changes that
/// opening the file normally would recover (roll back, or read and later
/// checkpoint). Returns which.
pub(super) fn leftover(absolute: &Path) -> Option<&'static str> {
    ["-wal", "-journal"].into_iter().find(|suffix| {
        let mut path = absolute.as_os_str().to_owned();
        path.push(suffix);
        std::fs::metadata(PathBuf::from(path)).is_ok_and(|meta| meta.len() > 0)
    })
}

/// Decides "souk or not" before any connection that could write: from the
/// header, and for a file without souk's application id from its schema
/// read out of the main file alone (`immutable`: no locks, no -wal or
/// -journal read, nothing created). A file whose main part holds no souk
/// schema while a -wal or -journal beside it holds changes is refused: it
/// cannot be told apart without recovering them.
pub(super) fn vet(absolute: &Path) -> Result<Header> {
    let header = read_header(absolute)?;
    let pending = leftover(absolute);
    match header {
        Header::Souk => {}
        Header::Empty | Header::Unmarked => {
            let version = match header {
                Header::Empty => 0,
                _ => {
                    let conn = open_for_reading(absolute, Reading::Immutable)?;
                    souk_version(&conn, absolute)?
                }
            };
            if let Some(which) = pending
                && version == 0
            {
                return Err(Error::Setup(format!(
                    "{} holds no souk schema, but a {which} file beside it holds changes: \
                     souk cannot tell whose database it is without recovering them, and \
                     refuses to; move the {which} file aside if the database is new",
                    absolute.display()
                )));
            }
        }
    }
    Ok(header)
}

/// Tables a souk database at a version has, by the version that made
/// them: a file claiming a version without them is not souk's.
const TABLES_BY_VERSION: &[(u32, &str)] = &[
    (1, "meta"),
    (2, "users"),
    (2, "sessions"),
    (3, "accounts"),
    (3, "entries"),
    (3, "currency_totals"),
    (3, "idempotency"),
    (4, "escrows"),
    (6, "listings"),
    (6, "listing_tags"),
    (7, "orders"),
];

/// The schema version of a souk database, or why the file is not one.
pub(super) fn souk_version(conn: &Connection, absolute: &Path) -> Result<u32> {
    let read = |sql: &str| -> Result<i64> {
        conn.query_row(sql, [], |row| row.get(0))
            .map_err(|e| sqlite(absolute, e))
    };
    let version = u32::try_from(read("PRAGMA user_version")?).unwrap_or(u32::MAX);
    let application_id = read("PRAGMA application_id")?;
    let objects = read("SELECT count(*) FROM sqlite_master")?;
    if application_id != 0 && application_id != i64::from(APPLICATION_ID) {
        return Err(foreign(
            absolute,
            format!("application_id {application_id:#x}"),
        ));
    }
    if version == 0 && objects > 0 {
        return Err(foreign(
            absolute,
            format!("it has {objects} tables or indexes but no souk schema version"),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::Setup(format!(
            "the database {} has schema version {version}, newer than this souk's \
             ({SCHEMA_VERSION}): it was written by a newer souk; run that one",
            absolute.display()
        )));
    }
    let has_table = |name: &str| -> Result<bool> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [name],
            |row| row.get(0),
        )
        .map_err(|e| sqlite(absolute, e))
    };
    for &(since, table) in TABLES_BY_VERSION {
        if version >= since && !has_table(table)? {
            return Err(foreign(
                absolute,
                format!("user_version {version} but no souk `{table}` table"),
            ));
        }
    }
    Ok(version)
}

fn foreign(absolute: &Path, why: String) -> Error {
    Error::Setup(format!(
        "{} is a SQLite database of another application ({why}); souk refuses to \
         change it: point SOUK_DB at a souk database or a new file",
        absolute.display()
    ))
}

fn not_sqlite(absolute: &Path) -> Error {
    Error::Setup(format!(
        "{} is not a SQLite database (or it is encrypted or damaged)",
        absolute.display()
    ))
}

/// An error of SQLite about the file at `absolute`, in the operator's terms
/// where it is the file's fault.
pub(super) fn sqlite(absolute: &Path, e: rusqlite::Error) -> Error {
    let path = absolute.display();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not_sqlite(absolute),
        Some(ErrorCode::DatabaseCorrupt) => {
            Error::Setup(format!("the database {path} is damaged: {e}"))
        }
        Some(ErrorCode::CannotOpen) => {
            Error::Setup(format!("cannot open the database {path}: {e}"))
        }
        Some(ErrorCode::ReadOnly) => Error::Setup(format!(
            "the database {path} cannot be written (read-only file, directory or file system): {e}"
        )),
        Some(ErrorCode::PermissionDenied) => {
            Error::Setup(format!("permission denied on the database {path}: {e}"))
        }
        _ => Error::from(e),
    }
}

/// `path` made absolute against the working directory (not resolving
/// symlinks, so it names what the operator wrote).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// The directory the file is in, which must exist and be a directory.
fn directory_of(absolute: &Path) -> Result<PathBuf> {
    let dir = absolute.parent().unwrap_or(Path::new("/")).to_owned();
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(dir),
        Ok(_) => Err(Error::Setup(format!(
            "cannot open the database {}: {} is not a directory",
            absolute.display(),
            dir.display()
        ))),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            Err(Error::Setup(format!(
                "cannot open the database {}: the directory {} does not exist",
                absolute.display(),
                dir.display()
            )))
        }
        Err(e) => Err(cannot(absolute, &e)),
    }
}

fn is_a_directory(absolute: &Path) -> Error {
    Error::Setup(format!(
        "{} is a directory, not a database file (SOUK_DB names the file itself)",
        absolute.display()
    ))
}

fn cannot(absolute: &Path, e: &std::io::Error) -> Error {
    Error::Setup(format!(
        "cannot open the database {}: {e}",
        absolute.display()
    ))
}

fn cannot_read(absolute: &Path, e: &std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::PermissionDenied => Error::Setup(format!(
            "permission denied reading the database {}",
            absolute.display()
        )),
        _ => cannot(absolute, e),
    }
}

fn cannot_write(absolute: &Path, e: &std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::PermissionDenied => Error::Setup(format!(
            "the database {} is read-only for this user (permission denied writing it)",
            absolute.display()
        )),
        ErrorKind::ReadOnlyFilesystem => Error::Setup(format!(
            "the database {} is on a read-only file system",
            absolute.display()
        )),
        _ => cannot(absolute, e),
    }
}

fn why_not_writable(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::PermissionDenied => "not writable for this user (permission denied)".into(),
        ErrorKind::ReadOnlyFilesystem => "on a read-only file system".into(),
        _ => format!("not usable: {e}"),
    }
}

/// `access(2)`: whether this user may do `mode` (`W_OK`, …) to `path`,
/// asked without doing it.
fn access(path: &Path, mode: libc::c_int) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call;
    // access(2) only reads it.
    let status = unsafe { libc::access(c_path.as_ptr(), mode) };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A path as the path of a `file:` URI: every byte but unreserved ones and
/// `/` percent-encoded, so `?`, `#` and `%` in a file name stay in it.
fn uri_path(absolute: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for &byte in absolute.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(setup: &str) -> std::result::Result<u32, String> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(setup).unwrap();
        souk_version(&conn, Path::new("/x.db")).map_err(|e| e.to_string())
    }

    #[test]
    fn souk_databases_are_told_from_other_files() {
        assert_eq!(verdict(""), Ok(0), "an empty file is a new database");
        let meta = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);";
        let v3 = format!(
            "{meta} CREATE TABLE users (x); CREATE TABLE sessions (x); CREATE TABLE accounts (x);
             CREATE TABLE entries (x); CREATE TABLE currency_totals (x); CREATE TABLE idempotency (x);"
        );
        assert_eq!(verdict(&format!("{meta} PRAGMA user_version = 1;")), Ok(1));
        assert_eq!(verdict(&format!("{v3} PRAGMA user_version = 3;")), Ok(3));
        let souk_id =
            format!("{v3} PRAGMA user_version = 3; PRAGMA application_id = {APPLICATION_ID};");
        assert_eq!(verdict(&souk_id), Ok(3));
        for (setup, why) in [
            ("CREATE TABLE t (x);", "no souk schema version"),
            (
                "CREATE TABLE t (x); PRAGMA user_version = 2;",
                "no souk `meta` table",
            ),
            (
                &format!("{meta} PRAGMA user_version = 2; PRAGMA application_id = 42;"),
                "application_id 0x2a",
            ),
            (
                &format!("{meta} PRAGMA user_version = 2;"),
                "no souk `users` table",
            ),
            (
                &format!("{v3} PRAGMA user_version = 4;"),
                "no souk `escrows` table",
            ),
        ] {
            let err = verdict(setup).unwrap_err();
            assert!(
                err.contains("another application") && err.contains(why),
                "{setup}: {err}"
            );
        }
        let err = verdict(&format!(
            "{meta} PRAGMA user_version = {};",
            SCHEMA_VERSION + 1
        ))
        .unwrap_err();
        assert!(err.contains("newer than this souk"), "{err}");
    }

    #[test]
    fn uri_paths_keep_special_characters_in_the_name() {
        assert_eq!(
            uri_path(Path::new("/a b/c?d#%.db")),
            "/a%20b/c%3Fd%23%25.db"
        );
    }
}
