//! systemd's service notifications (sd_notify(3)), for `Type=notify`:
//! READY=1 once souk listens, STOPPING=1 when it begins to stop, STATUS=
//! lines, and WATCHDOG=1 every half WATCHDOG_USEC while the threads it
//! watches (the HTTP acceptor, the database writer) show life. Each
//! message is one datagram to the Unix socket named by NOTIFY_SOCKET (a
//! path, or `@name` in the abstract namespace). Without NOTIFY_SOCKET every
//! call does nothing.
//!
//! std's `UnixDatagram` does all of it (paths and abstract names, no
//! unsafe), so no crate is needed for a protocol of one datagram.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::heartbeat::Heartbeat;
use crate::limits::{WATCHDOG_PING_MS_MIN, WATCHDOG_STALE_MS_MIN};

/// Where notifications go; `None` when systemd did not ask for them.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From NOTIFY_SOCKET. A value that names no usable socket is logged
    /// and leaves notifications off (souk serves all the same).
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let name = name.to_string_lossy().into_owned();
        match open(&name) {
            Ok(target) => Notifier {
                target: Some(target),
            },
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={name}: {e}; systemd will not hear from souk");
                Notifier { target: None }
            }
        }
    }

    /// Sends one message (`KEY=value` lines). Does nothing without
    /// NOTIFY_SOCKET.
    pub fn send(&self, message: &str) -> io::Result<()> {
        match &self.target {
            Some((socket, addr)) => socket.send_to_addr(message.as_bytes(), addr).map(drop),
            None => Ok(()),
        }
    }

    /// `send`, with a failure logged.
    pub fn tell(&self, message: &str) {
        if let Err(e) = self.send(message) {
            let first = message.lines().next().unwrap_or_default();
            log::warn!("cannot tell systemd {first}: {e}");
        }
    }

    /// Whether NOTIFY_SOCKET named a socket.
    pub fn is_on(&self) -> bool {
        self.target.is_some()
    }
}

fn open(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an absolute path or an @abstract name",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// The watchdog interval systemd asked for (WATCHDOG_USEC), unless
/// WATCHDOG_PID names another process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A watched thread: its name (for the log) and its heartbeat.
pub type Watched = (&'static str, Arc<Heartbeat>);

/// The thread that sends WATCHDOG=1; stopping it joins it.
pub struct Watchdog {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Pings every `interval / 2` while each watched heartbeat is younger
    /// than `interval / 2` (at least WATCHDOG_STALE_MS_MIN): a thread stuck
    /// longer stops the pings, and systemd acts after `interval` without one.
    pub fn start(
        notifier: Arc<Notifier>,
        interval: Duration,
        watched: Vec<Watched>,
    ) -> io::Result<Watchdog> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let every = (interval / 2).max(Duration::from_millis(WATCHDOG_PING_MS_MIN));
        let stale_after = every.max(Duration::from_millis(WATCHDOG_STALE_MS_MIN));
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .stack_size(crate::limits::SERVICE_STACK_BYTES)
            .spawn(move || {
                let mut withheld_for: Option<&'static str> = None;
                loop {
                    let stuck = watched.iter().find(|(_, h)| h.age() > stale_after);
                    match stuck {
                        None => {
                            if let Some(name) = withheld_for.take() {
                                log::info!("watchdog: the {name} thread is alive again");
                            }
                            notifier.tell("WATCHDOG=1");
                        }
                        Some((name, heartbeat)) if withheld_for.is_none() => {
                            withheld_for = Some(name);
                            log::warn!(
                                "watchdog: the {name} thread has shown no life for {} ms; \
                                 not telling systemd that souk is alive",
                                heartbeat.age().as_millis()
                            );
                        }
                        Some(_) => {}
                    }
                    match stopped.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Watchdog { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
