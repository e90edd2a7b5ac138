//! The command line (SPEC §1): `serve` (the default), `migrate`, and the
//! places reserved for `user create`, `backup` and `check`.

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
        Command::User(UserCommand::Create { .. }) => not_yet("user create"),
        Command::Backup { .. } => not_yet("backup"),
        Command::Check => not_yet("check"),
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
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Registered before the server starts so no early signal is lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let running = crate::app::start(config).map_err(|e| e.to_string())?;
    log::info!("listening on http://{}", running.addr);
    if let Some(signal) = signals.forever().next() {
        log::info!("signal {signal} received: finishing requests in flight");
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

fn not_yet(what: &str) -> Result<ExitCode, String> {
    Err(format!(
        "`souk {what}` arrives with the feature that needs it; not available in this version"
    ))
}
