//! One-shot database work for the command line, safe next to a running
//! server: a read-only connection (`souk check`, `souk user list`) and an
//! online copy (`souk backup`). Neither writes to the database file, so both
//! work on a file the user may only read, or on read-only media.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags};

use super::open::{self, Reading};
use super::pragmas;
use crate::error::{Error, Result};

/// A `query_only` connection to an existing souk database that never writes
/// to it. Whose file it is is decided first from its bytes (`open::vet`).
/// Where the user may write the file and its directory it opens read-write
/// without checkpointing on close (the -wal and -shm files it made may stay
/// behind); otherwise `mode=ro`, and where that cannot open (no -shm can be
/// made: read-only media, a directory the user may not write) and no -wal or
/// -journal beside it holds changes, `immutable`. A -journal holding changes
/// (a write interrupted in rollback-journal mode) is refused: reading would
/// roll it back.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let absolute = open::for_reading(path)?;
    open::vet(&absolute)?;
    if open::leftover(&absolute) == Some("-journal") {
        return Err(Error::Setup(format!(
            "the database {} has a -journal file holding an interrupted write; reading it \
             would roll that back, which souk's read-only commands never do: run `souk \
             migrate` on it once (with the server stopped), then try again",
            absolute.display()
        )));
    }
    let how = Reading::best_for(&absolute);
    let mut conn = match open::try_open_for_reading(&absolute, how) {
        Ok(conn) => conn,
        Err(first) if how == Reading::ReadOnly && cannot_open_read_only(&first) => {
            if let Some(which) = open::leftover(&absolute) {
                return Err(Error::Setup(format!(
                    "cannot read the database {} read-only: its {which} file \
                     holds changes, and no -shm file can be made beside it to read them \
                     ({first}); copy the database with its {which} file to a writable directory",
                    absolute.display()
                )));
            }
            log::debug!("reading {} as immutable: {first}", absolute.display());
            open::open_for_reading(&absolute, Reading::Immutable)?
        }
        Err(e) => return Err(open::sqlite(&absolute, e)),
    };
    open::souk_version(&conn, &absolute)?;
    pragmas::init_reader(&mut conn).map_err(|e| open::sqlite(&absolute, e))?;
    Ok(conn)
}

/// The errors of `mode=ro` that mean "no -shm can be made or written here"
/// (not a busy file, a damaged one or anything else): the only ones worth
/// trying `immutable` for.
fn cannot_open_read_only(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// Where `souk backup` writes.
#[derive(Debug, Clone)]
pub enum BackupTarget {
    /// A new file; an existing one is never overwritten.
    File(PathBuf),
    /// Standard output (`souk backup -`), through a staged copy in a
    /// private temporary directory, unlinked before streaming starts.
    Stdout,
}

/// Mode of a backup and of its staged copies: owner only. A backup holds
/// the password hashes and the entry-id secret.
const BACKUP_FILE_MODE: u32 = 0o600;
/// Mode of the private directory `souk backup -` stages its copy in.
const STAGING_DIR_MODE: u32 = 0o700;

/// Copies the live database in one step: a single read snapshot (WAL), so
/// writers go on while it runs and the copy is consistent. The copy is a
/// self-contained database in rollback-journal mode (no -wal, -shm needed to
/// read it), integrity-checked and synced before this returns. A file
/// target is written under a temporary name beside it (mode 0600) and only
/// linked to its name when complete, so an interrupted backup never leaves
/// a partial file under the name asked for.
pub fn backup(source: &Path, target: &BackupTarget) -> Result<()> {
    if let BackupTarget::File(dest) = target
        && std::fs::symlink_metadata(dest).is_ok()
    {
        return Err(exists(dest));
    }
    let from = open_reader(source)?;
    match target {
        BackupTarget::File(dest) => {
            let dest = std::path::absolute(dest).unwrap_or_else(|_| dest.clone());
            let dir = dest.parent().unwrap_or(Path::new("/")).to_owned();
            let name = dest
                .file_name()
                .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
            let partial = dir.join(format!(".{name}.partial-{}", random_suffix()?));
            create_private(&partial, &dest)?;
            let done = copy_to(&from, &partial)
                .and_then(|()| sync_file(&partial))
                .and_then(|()| link_into_place(&partial, &dest))
                .and_then(|()| sync_directory(&dir));
            let _ = std::fs::remove_file(&partial);
            done
        }
        BackupTarget::Stdout => {
            let staging = staging_directory()?;
            let copy = staging.join("backup.db");
            let opened = create_private(&copy, &copy)
                .and_then(|()| copy_to(&from, &copy))
                .and_then(|()| {
                    std::fs::File::open(&copy)
                        .map_err(|e| Error::internal_from("opening the backup copy", e))
                });
            // Unlinked as soon as it is open (or failed): nothing is left
            // behind, whatever happens to the stream.
            let _ = std::fs::remove_file(&copy);
            let _ = std::fs::remove_dir_all(&staging);
            stream(opened?)
        }
    }
}

/// Creates `path` empty with mode 0600, failing if anything is there
/// (`create_new` makes the no-overwrite rule atomic); `named` is what an
/// error names.
fn create_private(path: &Path, named: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(BACKUP_FILE_MODE)
        .open(path)
        .map(drop)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => exists(named),
            _ => Error::Setup(format!("cannot create the backup {}: {e}", named.display())),
        })
}

/// Gives the finished copy its name without ever replacing a file: a hard
/// link fails if the name exists (a rename would overwrite it).
fn link_into_place(partial: &Path, dest: &Path) -> Result<()> {
    std::fs::hard_link(partial, dest).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists(dest),
        _ => Error::Setup(format!("cannot create the backup {}: {e}", dest.display())),
    })
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::Setup(format!("cannot sync the backup {}: {e}", path.display())))
}

/// Makes the new name durable (fsync of the directory holding it).
fn sync_directory(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::Setup(format!("cannot sync the directory {}: {e}", dir.display())))
}

fn exists(dest: &Path) -> Error {
    let dest = std::path::absolute(dest).unwrap_or_else(|_| dest.to_owned());
    Error::Setup(format!(
        "the backup target {} exists; souk backup never overwrites a file",
        dest.display()
    ))
}

fn random_suffix() -> Result<String> {
    let random = u64::from_le_bytes(crate::ids::random_bytes()?);
    Ok(format!("{}-{random:016x}", std::process::id()))
}

/// A new directory only this user may enter, in the temporary directory,
/// for `souk backup -`.
fn staging_directory() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let path = std::env::temp_dir().join(format!("souk-backup-{}", random_suffix()?));
    std::fs::DirBuilder::new()
        .mode(STAGING_DIR_MODE)
        .create(&path)
        .map_err(|e| {
            Error::Setup(format!(
                "cannot create a staging directory {} for the backup: {e}",
                path.display()
            ))
        })?;
    Ok(path)
}

fn copy_to(from: &Connection, dest: &Path) -> Result<()> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut to = Connection::open_with_flags(dest, flags).map_err(|e| open::sqlite(dest, e))?;
    {
        let copy = Backup::new(from, &mut to)?;
        // -1: every page in one step, inside one read transaction.
        copy.step(-1)?;
    }
    // The pages copied say "WAL" in their header when the source is; the
    // copy is made a plain rollback-journal file so read-only media can hold it.
    let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::internal(format!(
            "the backup kept journal mode {mode}"
        )));
    }
    let verdict: String = to.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(Error::internal(format!(
            "backup failed its integrity check: {verdict}"
        )));
    }
    Ok(())
}

/// Writes the finished copy (open, already unlinked) to standard output.
fn stream(mut file: std::fs::File) -> Result<()> {
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut file, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| Error::Setup(format!("writing the backup to standard output: {e}")))?;
    Ok(())
}
