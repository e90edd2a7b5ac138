//! The command line (docs/running.md): `serve` (the default), `migrate`, `user
//! create`, `backup` and `check`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigArgs};

#[derive(Parser, Debug)]
#[command(name = "souk", version, about = "A marketplace core in one small binary.", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create or upgrade the database, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Write a consistent copy of the live database to PATH.
    Backup { path: std::path::PathBuf },
    /// Verify every ledger invariant; exit 1 listing the problems.
    Check,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password comes from stdin or SOUK_PASSWORD.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        admin: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::from(cli.config);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::User(UserCommand::Create { username, admin }) => {
            user_create(&config, &username, admin)
        }
        Command::Backup { path } => backup(&config, &path),
        Command::Check => check(&config),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            log::error!("{message}");
            eprintln!("souk: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> Result<ExitCode, String> {
    return_large_frees_to_the_os();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Registered before the server starts so no early signal is lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    config.check()?;
    let running = crate::app::start(config).map_err(|e| e.to_string())?;
    log::info!("listening on {}://{}", running.scheme(), running.addr);
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
    running.shutdown();
    log::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn migrate(config: &Config) -> Result<ExitCode, String> {
    let version = crate::store::migrate_file(&config.db_path).map_err(|e| e.to_string())?;
    log::info!(
        "{} is at schema version {version}",
        config.db_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates a user from the command line: the way to make the first admin.
/// Works next to a running server (the write waits its turn for the lock).
fn user_create(config: &Config, username: &str, admin: bool) -> Result<ExitCode, String> {
    use crate::accounts::{Password, Role, Username, passwords, users};
    let username = Username::parse(username).map_err(|e| e.to_string())?;
    let text = match std::env::var("SOUK_PASSWORD") {
        Ok(text) => text,
        Err(_) => read_password_line()?,
    };
    let password = Password::parse("password", text).map_err(|e| e.to_string())?;
    let hash = passwords::hash_now(password.as_bytes()).map_err(|e| e.to_string())?;
    let store = open_store(config)?;
    let role = if admin { Role::Admin } else { Role::User };
    let now = crate::clock::unix_seconds();
    let created = store
        .writer
        .write(move |tx| users::insert(tx, &username, None, &hash, role, now));
    store.shutdown();
    let user = created.map_err(|e| e.to_string())?;
    println!(
        "created {} `{}` with id {}",
        role.as_str(),
        user.username,
        user.id
    );
    Ok(ExitCode::SUCCESS)
}

/// One line from stdin, without its line ending (nothing else is trimmed:
/// spaces are part of a password).
fn read_password_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

fn open_store(config: &Config) -> Result<crate::store::Store, String> {
    crate::store::Store::open(
        &crate::store::StoreConfig {
            path: config.db_path.clone(),
            readers: 1,
            query_timeout: config.query_timeout,
            breaker_threshold: config.circuit_threshold,
            breaker_cooldown: config.circuit_cooldown,
        },
        std::sync::Arc::new(crate::cache::no_caches()),
    )
    .map_err(|e| e.to_string())
}

/// Verifies every ledger invariant on one snapshot; exit 1 with the list.
fn check(config: &Config) -> Result<ExitCode, String> {
    let conn = crate::store::open_reader(&config.db_path).map_err(|e| e.to_string())?;
    let problems = crate::ledger::check::check(&conn).map_err(|e| e.to_string())?;
    if problems.is_empty() {
        println!("ok: every ledger invariant holds");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        println!("problem: {problem}");
    }
    println!("{} problem(s) found", problems.len());
    Ok(ExitCode::FAILURE)
}

fn backup(config: &Config, dest: &std::path::Path) -> Result<ExitCode, String> {
    crate::store::backup(&config.db_path, dest).map_err(|e| e.to_string())?;
    println!(
        "backed up {} to {}",
        config.db_path.display(),
        dest.display()
    );
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
