//! The command line (docs/running.md): `serve` (the default), `migrate`,
//! `user create | list | passwd | set-role | suspend | reactivate | unlock`,
//! `backup` and `check`. Only `serve` takes the server's settings; the
//! others take `--db` alone. A fatal error is printed once, `souk: why`,
//! with exit status 2 when it is the operator's to fix.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::accounts::{Role, Status, Username, operator};
use crate::config::{self, Config, ConfigArgs, DbArg};
use crate::error::Error;
use crate::systemd::{self, Notifier};

#[derive(Parser, Debug)]
#[command(
    name = "souk",
    version,
    about = "A marketplace core in one small binary.",
    long_about = None,
    after_help = "With no command, or only settings (`souk --db FILE`), souk serves: \
                  `souk serve --help` lists every setting."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API (the default command).
    Serve {
        #[command(flatten)]
        config: Box<ConfigArgs>,
    },
    /// Create or upgrade the database, then exit.
    Migrate {
        #[command(flatten)]
        db: DbArg,
    },
    /// Manage users: works beside a running server, which sees each change
    /// at once.
    User {
        #[command(flatten)]
        db: DbArg,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write a consistent copy of the live database to PATH.
    Backup {
        /// A new file for the copy (an existing file is never overwritten),
        /// or `-` for standard output.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// Verify every ledger invariant; exit 3 listing the problems.
    Check {
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password comes from stdin or SOUK_PASSWORD.
    Create {
        /// The new user's name: 3-32 of a-z, 0-9 and _ (any case; stored lowercase).
        #[arg(long, value_name = "NAME")]
        username: String,
        /// Make the user an admin (otherwise an ordinary user).
        #[arg(long)]
        admin: bool,
    },
    /// List every user: id, name, role, status, created, last login.
    List,
    /// Set a user's password (from stdin or SOUK_PASSWORD) and end all
    /// their sessions.
    Passwd {
        /// The user's name.
        name: String,
    },
    /// Make a user an admin or an ordinary user.
    SetRole {
        /// The user's name.
        name: String,
        /// The new role.
        role: RoleArg,
    },
    /// Suspend a user: no login, every session ended.
    Suspend {
        /// The user's name.
        name: String,
    },
    /// Let a suspended user log in again.
    Reactivate {
        /// The user's name.
        name: String,
    },
    /// Lift a login lockout (failed logins) of a user on the running server.
    Unlock {
        /// The user's name.
        name: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Admin,
    User,
}

/// Exit status of an operator's mistake (a setting, a file, a name): the
/// status clap gives a bad flag, too. Failures souk cannot blame on its
/// input exit 1.
const EXIT_OPERATOR: u8 = 2;
/// Exit status of `souk check` when it ran and found ledger invariants
/// violated: told apart from a check that could not run (1 or 2).
const EXIT_PROBLEMS: u8 = 3;

pub fn main() -> ExitCode {
    let args = with_default_command(std::env::args_os().collect());
    let cli: Cli = config::parse_args(args).unwrap_or_else(|e| e.exit());
    // SOUK_LOG_FORMAT is a setting of `serve`; the other commands talk to
    // a terminal.
    let log_format = match &cli.command {
        Command::Serve { config } => config.log_format,
        _ => crate::config::LogFormat::Text,
    };
    crate::logs::init(log_format);
    let result = match cli.command {
        Command::Serve { config } => serve(Config::from(*config)),
        Command::Migrate { db } => migrate(&db.db),
        Command::User { db, command } => user(&db.db, command),
        Command::Backup { path, db } => backup(&db.db, &path),
        Command::Check { db } => check(&db.db),
    };
    // Lines still on their way to stderr go before the exit (and before
    // the fatal error, so they stay in order).
    crate::logs::flush();
    match result {
        Ok(code) => code,
        Err(error) => {
            // The one place a fatal error is printed (a closed stderr is
            // not worth a panic: the exit status still tells).
            {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "souk: {error}");
            }
            match error {
                Error::Setup(_)
                | Error::InvalidField { .. }
                | Error::Conflict { .. }
                | Error::NotFound => ExitCode::from(EXIT_OPERATOR),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `serve` is the default: with no command, or when the first argument is
/// a setting (`souk --db FILE`), the arguments are `serve`'s.
fn with_default_command(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).map(|arg| arg.to_string_lossy().into_owned());
    let serves = match first.as_deref() {
        None => true,
        Some("-h" | "--help" | "-V" | "--version") => false,
        Some(arg) => arg.starts_with('-'),
    };
    if serves {
        args.insert(1.min(args.len()), OsString::from("serve"));
    }
    args
}

fn serve(config: Config) -> Result<ExitCode, Error> {
    return_large_frees_to_the_os();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Registered before the server starts so no early signal is lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::internal_from("cannot install signal handlers", e))?;
    config.check().map_err(Error::Setup)?;
    let running = crate::app::start(config)?;
    log::info!("listening on {}://{}", running.scheme(), running.addr);
    let (systemd, watchdog) = match notify_ready(&running) {
        Ok(pair) => pair,
        Err(e) => {
            running.shutdown();
            let message = format!("cannot start the watchdog thread: {e}");
            return Err(Error::internal(message));
        }
    };
    for signal in signals.forever() {
        if signal == SIGHUP {
            // Read and parsed on this thread, then swapped in: the server's
            // threads never wait on the files.
            match (&running.tls, running.reload_tls()) {
                (None, _) => log::info!("SIGHUP: no TLS configured, nothing to reload"),
                (Some(tls), Ok(())) => {
                    log::info!(
                        "SIGHUP: TLS certificate reloaded from {}",
                        tls.cert_path().display()
                    );
                }
                (Some(_), Err(e)) => {
                    log::error!("SIGHUP: TLS reload failed, keeping the old certificate: {e}")
                }
            }
            continue;
        }
        log::info!("signal {signal} received: finishing requests in flight");
        break;
    }
    // The pings end first, so none follows STOPPING=1.
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    systemd.tell("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
    running.shutdown();
    log::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// systemd (`Type=notify`, see `systemd`): READY=1 now that souk listens,
/// then the watchdog thread if systemd asked for pings. Without
/// NOTIFY_SOCKET nothing is sent and no thread starts.
fn notify_ready(
    running: &crate::app::Running,
) -> std::io::Result<(Arc<Notifier>, Option<systemd::Watchdog>)> {
    let notifier = Arc::new(Notifier::from_env());
    // READY=1 first: a ping before it would come from a service still starting.
    notifier.tell(&format!(
        "READY=1\nSTATUS=serving on {}://{}",
        running.scheme(),
        running.addr
    ));
    let watchdog = match systemd::watchdog_interval().filter(|_| notifier.is_on()) {
        Some(interval) => Some(systemd::Watchdog::start(
            Arc::clone(&notifier),
            interval,
            running.heartbeats(),
        )?),
        None => None,
    };
    Ok((notifier, watchdog))
}

fn migrate(db: &Path) -> Result<ExitCode, Error> {
    let version = crate::store::migrate_file(db)?;
    say(format_args!(
        "{} is at schema version {version}",
        db.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn user(db: &Path, command: UserCommand) -> Result<ExitCode, Error> {
    match command {
        UserCommand::Create { username, admin } => user_create(db, &username, admin),
        UserCommand::List => user_list(db),
        UserCommand::Passwd { name } => {
            let username = Username::parse(&name)?;
            let hash = password_hash()?;
            let user = write(db, move |tx| operator::set_password(tx, &username, &hash))?;
            say(format_args!(
                "password of `{}` changed; every session of theirs ended",
                user.username
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::SetRole { name, role } => {
            let username = Username::parse(&name)?;
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::User => Role::User,
            };
            let user = write(db, move |tx| operator::set_role(tx, &username, role))?;
            say(format_args!("`{}` is now {}", user.username, role.as_str()))?;
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Suspend { name } => set_status(db, &name, Status::Suspended),
        UserCommand::Reactivate { name } => set_status(db, &name, Status::Active),
        UserCommand::Unlock { name } => {
            let username = Username::parse(&name)?;
            let user = write(db, move |tx| operator::unlock(tx, &username))?;
            say(format_args!(
                "`{}` unlocked: failed logins forgotten",
                user.username
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn set_status(db: &Path, name: &str, status: Status) -> Result<ExitCode, Error> {
    let username = Username::parse(name)?;
    let user = write(db, move |tx| operator::set_status(tx, &username, status))?;
    say(format_args!(
        "`{}` is now {}",
        user.username,
        status.as_str()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Every user, one per line, tab-separated under a header.
fn user_list(db: &Path) -> Result<ExitCode, Error> {
    use std::io::Write;
    let conn = crate::store::open_reader(db)?;
    let mut out = std::io::stdout().lock();
    let mut written = writeln!(out, "id\tusername\trole\tstatus\tcreated_at\tlast_login_at");
    operator::list(&conn, |user| {
        if written.is_ok() {
            written = writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}",
                user.id,
                user.username,
                user.role.as_str(),
                user.status.as_str(),
                crate::clock::rfc3339(user.created_at),
                user.last_login_at.map_or("-".into(), crate::clock::rfc3339)
            );
        }
    })?;
    written.map_err(|e| Error::Setup(format!("writing the list to standard output: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs one write job on the database through a writer of this process;
/// SQLite's locking (with a busy timeout) orders it with a running server's
/// writes. An existing database only: no user to change in a new one.
fn write<T: Send + 'static>(
    db: &Path,
    work: impl Fn(&crate::store::WriteTx<'_>) -> crate::error::Result<T> + Send + 'static,
) -> Result<T, Error> {
    let absolute = crate::store::open::for_reading(db)?;
    let store = open_store(db, false)?;
    let result = store.writer.write(work);
    store.shutdown();
    if result.is_ok() {
        // A running server takes the change in within this time
        // (`operator::OPERATOR_SETTLE`): the command returns only then.
        std::thread::sleep(operator::OPERATOR_SETTLE);
    }
    result.map_err(|e| match e {
        Error::Setup(message) => Error::Setup(format!("{message} in {}", absolute.display())),
        other => other,
    })
}

/// A password read from SOUK_PASSWORD or one line of stdin, hashed.
fn password_hash() -> Result<String, Error> {
    use crate::accounts::{Password, passwords};
    let text = match std::env::var("SOUK_PASSWORD") {
        Ok(text) => text,
        Err(_) => read_password_line()?,
    };
    let password = Password::parse("password", text)?;
    passwords::hash_now(password.as_bytes())
}

/// Creates a user from the command line: the way to make the first admin.
/// Works next to a running server (the write waits its turn for the lock).
fn user_create(db: &Path, username: &str, admin: bool) -> Result<ExitCode, Error> {
    use crate::accounts::users;
    let username = Username::parse(username)?;
    let hash = password_hash()?;
    let store = open_store(db, true)?;
    let role = if admin { Role::Admin } else { Role::User };
    let now = crate::clock::unix_seconds();
    let created = store
        .writer
        .write(move |tx| users::insert(tx, &username, None, &hash, role, now));
    store.shutdown();
    let user = created?;
    say(format_args!(
        "created {} `{}` with id {}",
        role.as_str(),
        user.username,
        user.id
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// One line from stdin, without its line ending (nothing else is trimmed:
/// spaces are part of a password).
fn read_password_line() -> Result<String, Error> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::Setup(format!("reading the password from stdin: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// The store for a `souk user` command: one reader, the default query
/// timeout and breaker settings (`souk serve --help`), no caches. Never
/// migrates (a server of another version may be running on the file): a
/// database at another schema version is refused; a new one is made only
/// when `may_create` (`souk user create`).
fn open_store(db: &Path, may_create: bool) -> Result<crate::store::Store, Error> {
    crate::store::Store::open_current(
        &crate::store::StoreConfig {
            path: db.to_owned(),
            readers: 1,
            query_timeout: std::time::Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_cooldown: std::time::Duration::from_secs(5),
        },
        std::sync::Arc::new(crate::cache::no_caches()),
        may_create,
    )
}

/// Verifies every ledger invariant on one snapshot: exit 0 when all hold,
/// `EXIT_PROBLEMS` with the list when some do not.
fn check(db: &Path) -> Result<ExitCode, Error> {
    use std::io::Write;
    let conn = crate::store::open_reader(db)?;
    // The invariants are this schema's: an older database (before `souk
    // migrate`) lacks what they read, such as the id keys of migration 11.
    let version: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version < crate::store::SCHEMA_VERSION {
        return Err(Error::Setup(format!(
            "the database {} has schema version {version}, older than this souk's ({}): \
             check it with the souk that serves it, or run `souk migrate` first (with the \
             server stopped)",
            db.display(),
            crate::store::SCHEMA_VERSION
        )));
    }
    let problems = crate::audit::check(&conn)?;
    let mut out = std::io::stdout().lock();
    if problems.is_empty() {
        writeln!(out, "ok: every ledger invariant holds").map_err(stdout_failed)?;
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        writeln!(out, "problem: {problem}").map_err(stdout_failed)?;
    }
    writeln!(out, "{} problem(s) found", problems.len()).map_err(stdout_failed)?;
    Ok(ExitCode::from(EXIT_PROBLEMS))
}

/// One line of a command's report on stdout. A stdout that cannot be
/// written (closed early: `souk check | head -0`) is an error like any
/// other, never a panic.
fn say(line: std::fmt::Arguments<'_>) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(stdout_failed)
}

fn stdout_failed(e: std::io::Error) -> Error {
    Error::Setup(format!("writing to standard output: {e}"))
}

/// `souk backup PATH`, or `souk backup -` to standard output (the report
/// then goes to stderr, so stdout is the database alone).
fn backup(db: &Path, dest: &Path) -> Result<ExitCode, Error> {
    use crate::store::BackupTarget;
    if dest == Path::new("-") {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            return Err(Error::Setup(
                "souk backup - writes a database file to stdout: redirect it to a file or a pipe"
                    .into(),
            ));
        }
        crate::store::backup(db, &BackupTarget::Stdout)?;
        log::info!("backed up {} to standard output", db.display());
        return Ok(ExitCode::SUCCESS);
    }
    crate::store::backup(db, &BackupTarget::File(dest.to_owned()))?;
    say(format_args!(
        "backed up {} to {}",
        db.display(),
        dest.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Allocations of 256 KiB and more get their own mapping, unmapped when freed.
/// Without it glibc raises its threshold after the first large free, and
/// each argon2 hash (19 MiB) stays resident in an arena for good.
fn return_large_frees_to_the_os() {
    const MMAP_THRESHOLD_BYTES: libc::c_int = 256 * 1024;
    // SAFETY: mallopt only changes allocator tuning; it is called once, before
    // the server starts any thread.
    let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
    if applied != 1 {
        log::debug!("mallopt(M_MMAP_THRESHOLD) was refused; large frees may stay resident");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        with_default_command(list.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn serve_is_the_default_command() {
        assert_eq!(args(&["souk"]), ["souk", "serve"]);
        assert_eq!(
            args(&["souk", "--db", "x.db"]),
            ["souk", "serve", "--db", "x.db"]
        );
        assert_eq!(args(&["souk", "check"]), ["souk", "check"]);
        assert_eq!(args(&["souk", "--help"]), ["souk", "--help"]);
        assert_eq!(args(&["souk", "-V"]), ["souk", "-V"]);
        for argv in [
            &["souk"][..],
            &["souk", "--db", "x.db"],
            &["souk", "user", "list"],
        ] {
            assert!(Cli::try_parse_from(args(argv)).is_ok(), "{argv:?}");
        }
    }
}
