//! The typed configuration (docs/running.md; README: Configuration): every
//! environment variable is also a command-line flag, parsed and range-checked
//! once at start. A bad value stops the program with a message naming the
//! variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;

use crate::api::cors::CorsOrigins;
use crate::http::proxy::TrustedProxies;
use crate::limits;

/// Flags and environment variables as clap reads them. `Config` is what the
/// rest of the program sees.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Listen address.
    #[arg(long = "addr", env = "SOUK_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub db: DbArg,
    /// Enabled currencies and their decimal places, e.g. btc:8,xmr:12.
    #[arg(long = "currencies", env = "SOUK_CURRENCIES", default_value = "btc:8,xmr:12", value_parser = parse_currencies)]
    pub currencies: Currencies,
    /// Request worker threads [default: 2 x CPUs].
    #[arg(long = "workers", env = "SOUK_WORKERS", value_parser = clap::value_parser!(u32).range(1..=limits::WORKERS_MAX as i64))]
    pub workers: Option<u32>,
    /// Read-only database connection pool size.
    #[arg(long = "max-db-connections", env = "MAX_DB_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=limits::DB_READERS_MAX as i64))]
    pub max_db_connections: u32,
    /// Seconds before a database query is interrupted.
    #[arg(long = "query-timeout", env = "QUERY_TIMEOUT", default_value = "30", value_parser = seconds(1..=3600))]
    pub query_timeout: Duration,
    /// User/profile cache TTL, seconds.
    #[arg(long = "cache-timeout", env = "CACHE_TIMEOUT", default_value = "300", value_parser = seconds(0..=86_400))]
    pub cache_timeout: Duration,
    /// Balance cache TTL, seconds.
    #[arg(long = "balance-cache-timeout", env = "BALANCE_CACHE_TIMEOUT", default_value = "120", value_parser = seconds(0..=86_400))]
    pub balance_cache_timeout: Duration,
    /// Statistics cache TTL, seconds.
    #[arg(long = "stats-cache-timeout", env = "STATS_CACHE_TIMEOUT", default_value = "1800", value_parser = seconds(0..=86_400))]
    pub stats_cache_timeout: Duration,
    /// Failed logins before a lockout.
    #[arg(long = "max-login-attempts", env = "MAX_LOGIN_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_login_attempts: u32,
    /// Lockout length, seconds.
    #[arg(long = "lockout-duration", env = "LOCKOUT_DURATION", default_value = "900", value_parser = seconds(1..=2_592_000))]
    pub lockout_duration: Duration,
    /// Session lifetime, seconds.
    #[arg(long = "session-ttl", env = "SESSION_TTL", default_value = "604800", value_parser = seconds(60..=31_536_000))]
    pub session_ttl: Duration,
    /// Seconds between monitor samples.
    #[arg(long = "monitoring-interval", env = "MONITORING_INTERVAL", default_value = "60", value_parser = seconds(1..=86_400))]
    pub monitoring_interval: Duration,
    /// Minimum seconds between two firings of one alert rule.
    #[arg(long = "alert-cooldown", env = "ALERT_COOLDOWN", default_value = "300", value_parser = seconds(0..=86_400))]
    pub alert_cooldown: Duration,
    /// Alert when system memory use is above this percentage.
    #[arg(long = "alert-memory-percent", env = "ALERT_MEMORY_PERCENT", default_value_t = 85, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub alert_memory_percent: u32,
    /// Alert when CPU use is above this percentage.
    #[arg(long = "alert-cpu-percent", env = "ALERT_CPU_PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub alert_cpu_percent: u32,
    /// Alert when the average response time is above this many milliseconds.
    #[arg(long = "alert-response-ms", env = "ALERT_RESPONSE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub alert_response_ms: u64,
    /// Alert when the 5xx error rate is above this percentage.
    #[arg(long = "alert-error-percent", env = "ALERT_ERROR_PERCENT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub alert_error_percent: u32,
    /// Whether anyone may register (true/false).
    #[arg(long = "open-registration", env = "SOUK_OPEN_REGISTRATION", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub open_registration: bool,
    /// When set, /metrics needs `Authorization: Bearer` with it.
    #[arg(
        long = "metrics-token",
        env = "SOUK_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Login attempts per minute from one client address.
    #[arg(long = "login-rate-limit", env = "LOGIN_RATE_LIMIT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub login_rate_limit: u32,
    /// Registrations (`POST /users`) per minute from one client address.
    #[arg(long = "registration-rate-limit", env = "SOUK_REGISTRATION_RATE_LIMIT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub registration_rate_limit: u32,
    /// Largest request body, bytes.
    #[arg(long = "max-body", env = "SOUK_MAX_BODY", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_body: u64,
    /// Bytes of request bodies being received at once, all connections
    /// together; at least SOUK_MAX_BODY.
    #[arg(long = "max-inflight-body", env = "SOUK_MAX_INFLIGHT_BODY", default_value_t = 33_554_432, value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024 * 1024))]
    pub max_inflight_body: u64,
    /// Connections served at once.
    #[arg(long = "max-connections", env = "SOUK_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Seconds for a request head or body to arrive.
    #[arg(long = "read-timeout", env = "SOUK_READ_TIMEOUT", default_value = "10", value_parser = seconds(1..=3600))]
    pub read_timeout: Duration,
    /// Consecutive store failures (disk full, I/O errors, timeouts) that open the circuit breaker.
    #[arg(long = "circuit-threshold", env = "SOUK_CIRCUIT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub circuit_threshold: u32,
    /// Seconds the circuit breaker stays open before one probe write.
    #[arg(long = "circuit-cooldown", env = "SOUK_CIRCUIT_COOLDOWN", default_value = "5", value_parser = seconds(1..=3600))]
    pub circuit_cooldown: Duration,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long = "idle-timeout", env = "SOUK_IDLE_TIMEOUT", default_value = "30", value_parser = seconds(1..=3600))]
    pub idle_timeout: Duration,
    /// PEM certificate chain; with SOUK_TLS_KEY, souk serves HTTPS only.
    #[arg(long = "tls-cert", env = "SOUK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate in SOUK_TLS_CERT.
    #[arg(long = "tls-key", env = "SOUK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated IPs and CIDR networks whose X-Forwarded-For is believed.
    #[arg(long = "trusted-proxies", env = "SOUK_TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,
    /// Comma-separated exact origins (https://app.example.com) allowed to call the API from a browser.
    #[arg(long = "cors-origins", env = "SOUK_CORS_ORIGINS", default_value = "", value_parser = CorsOrigins::parse)]
    pub cors_origins: CorsOrigins,
    /// Platform fee on completed orders, basis points (0-5000).
    #[arg(long = "fee-bps", env = "SOUK_FEE_BPS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=FEE_BPS_MAX as i64))]
    pub fee_bps: u32,
    /// Seconds a seller has to ship a paid order before it is cancelled and refunded.
    #[arg(long = "order-ship-within", env = "SOUK_ORDER_SHIP_WITHIN", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(1..=ORDER_TIMER_MAX_S))]
    pub order_ship_within: u64,
    /// Seconds after shipping before an order completes by itself.
    #[arg(long = "order-confirm-within", env = "SOUK_ORDER_CONFIRM_WITHIN", default_value_t = 1_209_600, value_parser = clap::value_parser!(u64).range(1..=ORDER_TIMER_MAX_S))]
    pub order_confirm_within: u64,
    /// Log line format: `text` for people, `json` for one JSON object per line.
    #[arg(long = "log-format", env = "SOUK_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// One log line per request at info level, target souk::access (true/false).
    #[arg(long = "access-log", env = "SOUK_ACCESS_LOG", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub access_log: bool,
}

/// The database file: the one setting every command takes.
#[derive(Args, Debug, Clone)]
pub struct DbArg {
    /// Database file.
    #[arg(
        long = "db",
        env = "SOUK_DB",
        default_value = "./souk.db",
        global = true
    )]
    pub db: PathBuf,
}

/// Each setting's flag takes its environment variable as its value name
/// (`--addr <SOUK_ADDR>`), so `--help` and clap's messages show both
/// spellings of it, each written once in `ConfigArgs`.
fn value_names_from_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            match env {
                Some(env) => arg.value_name(env),
                None => arg,
            }
        })
        .mut_subcommands(value_names_from_env)
}

/// `P` parsed from `args`, its settings named by `value_names_from_env`.
pub fn parse_args<P: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<P, clap::Error> {
    let mut command = value_names_from_env(P::command());
    let matches = command.try_get_matches_from_mut(args)?;
    P::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// How log lines are written (`crate::logs`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `[time LEVEL target] message key=value …`, for people.
    #[default]
    Text,
    /// One JSON object per line: ts, level, target, msg and the fields.
    Json,
}

pub use crate::limits::{FEE_BPS_MAX, ORDER_TIMER_MAX_S};

/// One enabled currency: its lowercase code and its decimal places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencySpec {
    pub code: String,
    pub decimals: u32,
}

/// The enabled currencies, in the order configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currencies(pub Vec<CurrencySpec>);

/// Most currencies one server enables.
pub const CURRENCIES_MAX: usize = 32;
/// Most decimal places: 10^18 minor units still fit an i64 once.
pub const CURRENCY_DECIMALS_MAX: u32 = 18;
/// Longest currency code.
pub const CURRENCY_CODE_CHARS_MAX: usize = 16;

/// Parses `btc:8,xmr:12`.
pub fn parse_currencies(text: &str) -> Result<Currencies, String> {
    let mut out: Vec<CurrencySpec> = Vec::new();
    for item in text.split(',') {
        let (code, decimals) = item
            .split_once(':')
            .ok_or_else(|| format!("`{item}` is not CODE:DECIMALS (e.g. btc:8)"))?;
        let code_ok = !code.is_empty()
            && code.len() <= CURRENCY_CODE_CHARS_MAX
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !code_ok {
            return Err(format!(
                "currency code `{code}` must be 1-{CURRENCY_CODE_CHARS_MAX} of [a-z0-9]"
            ));
        }
        let decimals: u32 = decimals
            .parse()
            .ok()
            .filter(|d| *d <= CURRENCY_DECIMALS_MAX)
            .ok_or_else(|| {
                format!("decimals of `{code}` must be 0-{CURRENCY_DECIMALS_MAX}, got `{decimals}`")
            })?;
        if out.iter().any(|c| c.code == code) {
            return Err(format!("currency `{code}` is listed twice"));
        }
        out.push(CurrencySpec {
            code: code.to_owned(),
            decimals,
        });
    }
    if out.len() > CURRENCIES_MAX {
        return Err(format!("at most {CURRENCIES_MAX} currencies"));
    }
    Ok(Currencies(out))
}

/// What the program runs with, every value checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    pub currencies: Currencies,
    pub workers: usize,
    pub db_readers: u32,
    pub query_timeout: Duration,
    pub cache_ttl: Duration,
    pub balance_cache_ttl: Duration,
    pub stats_cache_ttl: Duration,
    pub max_login_attempts: u32,
    pub lockout_duration: Duration,
    pub session_ttl: Duration,
    pub monitoring_interval: Duration,
    pub alert_cooldown: Duration,
    pub alert_memory_percent: u32,
    pub alert_cpu_percent: u32,
    pub alert_response_ms: u64,
    pub alert_error_percent: u32,
    pub open_registration: bool,
    pub metrics_token: Option<String>,
    pub login_rate_limit_per_minute: u32,
    pub registration_rate_limit_per_minute: u32,
    pub max_body_bytes: u64,
    pub max_inflight_body_bytes: u64,
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub circuit_threshold: u32,
    pub circuit_cooldown: Duration,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub trusted_proxies: TrustedProxies,
    pub cors_origins: CorsOrigins,
    /// Platform fee in basis points, fixed on each order when placed.
    pub fee_bps: u32,
    pub order_ship_within_s: i64,
    pub order_confirm_within_s: i64,
    pub log_format: LogFormat,
    /// Write the access log (one line per request, target souk::access).
    pub access_log: bool,
}

/// A whole number of seconds within `range`, as a `Duration`: the value
/// parser of every setting given in seconds.
fn seconds(
    range: std::ops::RangeInclusive<u64>,
) -> impl clap::builder::TypedValueParser<Value = Duration> {
    use clap::builder::TypedValueParser;
    clap::value_parser!(u64)
        .range(range)
        .map(Duration::from_secs)
}

impl From<ConfigArgs> for Config {
    fn from(args: ConfigArgs) -> Config {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = args
            .workers
            .map_or((2 * cpus).min(limits::WORKERS_MAX), |w| w as usize);
        Config {
            addr: args.addr,
            db_path: args.db.db,
            currencies: args.currencies,
            workers,
            db_readers: args.max_db_connections,
            query_timeout: args.query_timeout,
            cache_ttl: args.cache_timeout,
            balance_cache_ttl: args.balance_cache_timeout,
            stats_cache_ttl: args.stats_cache_timeout,
            max_login_attempts: args.max_login_attempts,
            lockout_duration: args.lockout_duration,
            session_ttl: args.session_ttl,
            monitoring_interval: args.monitoring_interval,
            alert_cooldown: args.alert_cooldown,
            alert_memory_percent: args.alert_memory_percent,
            alert_cpu_percent: args.alert_cpu_percent,
            alert_response_ms: args.alert_response_ms,
            alert_error_percent: args.alert_error_percent,
            open_registration: args.open_registration,
            metrics_token: args.metrics_token.filter(|t| !t.is_empty()),
            login_rate_limit_per_minute: args.login_rate_limit,
            registration_rate_limit_per_minute: args.registration_rate_limit,
            max_body_bytes: args.max_body,
            max_inflight_body_bytes: args.max_inflight_body,
            max_connections: args.max_connections as usize,
            read_timeout: args.read_timeout,
            idle_timeout: args.idle_timeout,
            circuit_threshold: args.circuit_threshold,
            circuit_cooldown: args.circuit_cooldown,
            tls_cert: args.tls_cert.filter(|p| !p.as_os_str().is_empty()),
            tls_key: args.tls_key.filter(|p| !p.as_os_str().is_empty()),
            trusted_proxies: args.trusted_proxies,
            cors_origins: args.cors_origins,
            fee_bps: args.fee_bps,
            // Both are at most ORDER_TIMER_MAX_S.
            order_ship_within_s: i64::try_from(args.order_ship_within).unwrap_or(i64::MAX),
            order_confirm_within_s: i64::try_from(args.order_confirm_within).unwrap_or(i64::MAX),
            log_format: args.log_format,
            access_log: args.access_log,
        }
    }
}

impl Config {
    /// Rules between settings that no single range can say; the message
    /// names the variables.
    pub fn check(&self) -> Result<(), String> {
        let largest_request = self.max_body_bytes + limits::REQUEST_HEAD_BYTES_MAX as u64;
        if self.max_inflight_body_bytes < largest_request {
            return Err(format!(
                "SOUK_MAX_INFLIGHT_BODY ({}) must be at least SOUK_MAX_BODY ({}) plus \
                 {} bytes of request head: a request of the largest size allowed \
                 could never be received",
                self.max_inflight_body_bytes,
                self.max_body_bytes,
                limits::REQUEST_HEAD_BYTES_MAX
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(
                    "SOUK_TLS_KEY must be set too: SOUK_TLS_CERT is set, and HTTPS needs both"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "SOUK_TLS_CERT must be set too: SOUK_TLS_KEY is set, and HTTPS needs both"
                        .into(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The settings an empty command line gives (the documented defaults, and any
    /// of its variables set in the environment) with another database and
    /// address: what tests and benchmarks start from.
    pub fn for_path(db_path: impl Into<PathBuf>, addr: SocketAddr) -> Result<Config, String> {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: ConfigArgs,
        }
        let only: Only = parse_args(["souk"]).map_err(|e| e.to_string())?;
        let mut config = Config::from(only.args);
        config.db_path = db_path.into();
        config.addr = addr;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_parse_and_reject_clearly() {
        let c = parse_currencies("btc:8,xmr:12").unwrap();
        assert_eq!(
            c.0[1],
            CurrencySpec {
                code: "xmr".into(),
                decimals: 12
            }
        );
        for bad in [
            "",
            "btc",
            "BTC:8",
            "btc:19",
            "btc:8,btc:2",
            "b c:2",
            "btc:-1",
        ] {
            assert!(parse_currencies(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn every_setting_flag_shows_its_environment_variable_as_its_value() {
        use clap::Args as _;
        let command = value_names_from_env(ConfigArgs::augment_args(clap::Command::new("serve")));
        let mut settings = 0;
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            settings += 1;
            let names: Vec<_> = arg.get_value_names().unwrap_or_default().to_vec();
            assert_eq!(names, [env.to_string_lossy().as_ref()], "{}", arg.get_id());
        }
        assert!(settings >= 30, "{settings} settings");
        let error = parse_args::<Probe>(["souk", "--workers", "0"]).unwrap_err();
        assert!(
            error.to_string().contains("'--workers <SOUK_WORKERS>'"),
            "{error}"
        );
    }

    #[derive(clap::Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        args: ConfigArgs,
    }
}
