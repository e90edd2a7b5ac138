//! Password hashing with argon2id (m = 19 MiB, t = 2, p = 1) on a small pool
//! of threads of its own: at most one hash per CPU runs at once, a bounded
//! queue waits, and a full queue answers 503. Request workers never hash, so
//! a login flood cannot starve other routes or exhaust memory.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use crossbeam_channel::{Sender, TrySendError};

use super::Password;
use crate::error::{Error, Result};

/// Hashes waiting for a hashing thread. Each takes ~20-50 ms, so a full queue
/// is about a second of work: past that a client is better told to retry.
pub const HASH_QUEUE_MAX: usize = 64;
/// Stack of a hashing thread (argon2's memory is on the heap).
const HASHER_STACK_BYTES: usize = 128 * 1024;

/// A queued hash or check: runs on a hashing thread, or fails unrun.
trait Task: Send {
    fn run(self: Box<Self>);
    fn fail(self: Box<Self>, error: Error);
}

struct Job<T, W, D> {
    work: W,
    done: D,
    result: std::marker::PhantomData<fn() -> T>,
}

impl<T, W, D> Task for Job<T, W, D>
where
    W: FnOnce() -> Result<T> + Send,
    D: FnOnce(Result<T>) + Send,
{
    fn run(self: Box<Self>) {
        let Job { work, done, .. } = *self;
        done(work());
    }
    fn fail(self: Box<Self>, error: Error) {
        (self.done)(Err(error));
    }
}

#[derive(Clone)]
pub struct Hasher {
    queue: Sender<Box<dyn Task>>,
    /// A hash of a fixed password, checked when a username is unknown so the
    /// answer costs the same time (made on first use: start-up stays instant).
    dummy: Arc<OnceLock<String>>,
}

fn argon2() -> Argon2<'static> {
    // The OWASP minimum for argon2id; the PHC string records the parameters,
    // so raising them later still verifies old hashes.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes on the calling thread (for `souk user create` and the pool).
pub fn hash_now(password: &[u8]) -> Result<String> {
    argon2()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("hashing a password: {e}")))
}

fn dummy_hash(slot: &OnceLock<String>) -> &str {
    slot.get_or_init(|| hash_now(b"souk: no such user").unwrap_or_default())
}

fn verify_now(password: &[u8], phc: &str) -> bool {
    argon2().verify_password(password, phc).is_ok()
}

impl Hasher {
    pub fn start(threads: usize) -> Result<Hasher> {
        let (queue, tasks) = crossbeam_channel::bounded::<Box<dyn Task>>(HASH_QUEUE_MAX);
        for index in 0..threads.max(1) {
            let tasks = tasks.clone();
            std::thread::Builder::new()
                .name(format!("hasher-{index}"))
                .stack_size(HASHER_STACK_BYTES)
                .spawn(move || {
                    while let Ok(task) = tasks.recv() {
                        task.run();
                    }
                })
                .map_err(Error::internal)?;
        }
        let hasher = Hasher {
            queue,
            dummy: Arc::new(OnceLock::new()),
        };
        // Made in the background right away, so the first login for an
        // unknown name costs no more than any other.
        let dummy = Arc::clone(&hasher.dummy);
        hasher.submit(move || Ok(dummy_hash(&dummy).len()), |_| {});
        Ok(hasher)
    }

    /// Queues `work` for a hashing thread; `done` gets its result there, or
    /// 503 at once when the queue is full.
    fn submit<T: 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
        done: impl FnOnce(Result<T>) + Send + 'static,
    ) {
        let task: Box<dyn Task> = Box::new(Job {
            work,
            done,
            result: std::marker::PhantomData,
        });
        if let Err(TrySendError::Full(task) | TrySendError::Disconnected(task)) =
            self.queue.try_send(task)
        {
            task.fail(Error::Unavailable {
                reason: "too many password checks at once".into(),
                retry_after_s: 1,
            });
        }
    }

    /// Hashes `password`; `done` gets the PHC string.
    pub fn hash(&self, password: Password, done: impl FnOnce(Result<String>) + Send + 'static) {
        self.submit(move || hash_now(password.as_bytes()), done);
    }

    /// Checks `password` against `phc`, or against the dummy hash when there
    /// is no user (same cost either way). `done` gets whether it matched.
    pub fn verify(
        &self,
        password: Password,
        phc: Option<String>,
        done: impl FnOnce(Result<bool>) + Send + 'static,
    ) {
        let dummy = Arc::clone(&self.dummy);
        let work = move || {
            Ok(match &phc {
                Some(phc) => verify_now(password.as_bytes(), phc),
                None => {
                    let _ = verify_now(password.as_bytes(), dummy_hash(&dummy));
                    false
                }
            })
        };
        self.submit(work, done);
    }
}
