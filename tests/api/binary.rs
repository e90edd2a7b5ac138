//! The real `souk` binary as a child process: the command on a database of
//! the test's own, subcommands that must exit by themselves, and a running
//! `souk serve` whose stderr is read line by line (`listening on
//! http://ADDR` gives its address), stopped with `kill`. Every wait has a
//! timeout, so a hung binary fails a test instead of hanging it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::TempDir;

/// How long the binary gets to start, to stop after a signal, or to run a
/// subcommand.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// `souk` on the database `souk.db` in `dir`, port 0, info logging, and no
/// `SOUK_PASSWORD` or systemd variables from the environment; stdout and
/// stderr piped.
pub fn souk(dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_souk"));
    command
        .env("SOUK_ADDR", "127.0.0.1:0")
        .env("SOUK_DB", dir.path.join("souk.db"))
        .env("RUST_LOG", "info")
        .env_remove("SOUK_PASSWORD")
        // Tests that want systemd notifications set these themselves.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The first admin, `admin` with `password`, made the way docs/running.md
/// says (`souk user create --admin`, before the server starts); it also
/// creates the database.
pub fn create_admin(dir: &TempDir, password: &str) {
    let mut command = souk(dir);
    command
        .args(["user", "create", "--username", "admin", "--admin"])
        .env("SOUK_PASSWORD", password);
    let (status, out, err) = run(command);
    assert!(
        status.success(),
        "souk user create: {status:?}\n{out}\n{err}"
    );
}

/// Waits for `child` to exit; kills it and panics after `PROCESS_TIMEOUT`.
pub fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for souk") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("souk did not exit within {PROCESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a subcommand that must exit by itself: status, stdout, stderr.
pub fn run(command: Command) -> (ExitStatus, String, String) {
    let (status, out, err) = run_bytes(command);
    (status, String::from_utf8_lossy(&out).into_owned(), err)
}

/// `run` for a command whose stdout is bytes (`souk backup -`).
pub fn run_bytes(mut command: Command) -> (ExitStatus, Vec<u8>, String) {
    let mut child = command.spawn().expect("starting souk");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_with_timeout(&mut child);
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// A running `souk` whose stderr lines arrive on a channel (read on a thread
/// of their own for the life of the child, so it never blocks on its log);
/// killed on drop if the test did not stop it.
pub struct Process {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Process {
    /// Spawns `command` with stdout discarded and stderr read into the log.
    pub fn spawn(mut command: Command) -> Process {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting souk");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let _ = lines_tx.send(line);
            }
        });
        Process {
            child,
            log: lines_rx,
        }
    }

    /// Reads log lines until one satisfies `wanted` or `within` passes: every
    /// line read (the wanted one last), and whether it came.
    pub fn read_log_until(
        &self,
        within: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> (Vec<String>, bool) {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    let hit = wanted(&line);
                    seen.push(line);
                    if hit {
                        return (seen, true);
                    }
                }
                Err(_) => return (seen, false),
            }
        }
    }

    /// Every log line so far (not read before).
    pub fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// After `wait`: every log line not read before, to the end of the
    /// child's stderr. The reader thread may still be passing on the last
    /// lines when the exit is seen, so this waits (up to PROCESS_TIMEOUT)
    /// for it to reach the end rather than taking what has arrived.
    pub fn log_to_end(&self) -> Vec<String> {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => return lines,
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
    pub fn status_bytes(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).expect("reading /proc/PID/status");
        let line = status
            .lines()
            .find(|line| line.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in {path}"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        kb * 1024
    }

    /// `kill SIGNAL` (e.g. `-TERM`, `-9`); panics unless `kill` succeeds.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed: {status:?}");
    }

    /// Waits for the exit (see `wait_with_timeout`).
    pub fn wait(&mut self) -> ExitStatus {
        wait_with_timeout(&mut self.child)
    }

    /// SIGTERM and a clean exit 0.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let status = self.wait();
        let log = self.log_to_end();
        assert_eq!(status.code(), Some(0), "{status:?}; log: {log:#?}");
    }

    /// SIGTERM, up to `PROCESS_TIMEOUT` for the exit, then SIGKILL: for a
    /// test that asserts nothing about how the binary ends.
    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills and reaps what is left.
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `souk serve` on the database in a `TempDir`, at the address it
/// logged; every `Process` method applies.
pub struct Served {
    process: Process,
    pub addr: SocketAddr,
}

impl Served {
    /// Starts `souk` (see `souk`) and waits up to `PROCESS_TIMEOUT` for
    /// `listening on http://ADDR`; panics with the log so far otherwise.
    pub fn start(dir: &TempDir) -> Served {
        Served::start_with(souk(dir))
    }

    /// `start` with a command of the test's (`souk(dir)` plus settings).
    pub fn start_with(command: Command) -> Served {
        let process = Process::spawn(command);
        let marker = "listening on http://";
        let (seen, found) = process.read_log_until(PROCESS_TIMEOUT, |line| line.contains(marker));
        let addr = match seen.last().and_then(|line| line.split_once(marker)) {
            Some((_, rest)) if found => {
                // Up to a space, or the closing quote of a JSON log line.
                let addr = rest.split([' ', '"']).next().unwrap_or_default();
                addr.parse().expect("a socket address after `listening on`")
            }
            _ => panic!(
                "souk did not log `listening on http://ADDR` within {PROCESS_TIMEOUT:?}; \
                 its log: {seen:#?}"
            ),
        };
        Served { process, addr }
    }

    /// SIGTERM and a clean exit 0 (see `Process::stop`).
    pub fn stop(self) {
        self.process.stop();
    }
}

impl Deref for Served {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}
