//! Password hashing with argon2id (m = 19 MiB, t = 2, p = 1) on a small pool
//! of threads of its own: at most one hash per CPU runs at once, a bounded
//! queue waits, and a full queue answers 503. Request workers never hash, so
//! a login flood cannot starve other routes or exhaust memory.

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
}

/// Checked when a username is unknown, so that the answer costs the same
/// time as a wrong password. Made once with the parameters below (a test
/// holds them together); what it hashes does not matter, since the result
/// of the check is thrown away. A constant, so start-up spends no CPU on it.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$EL4p6lTJ7vpie8HKf8Rcdw$ZT4lSB09dHR9+8fzwb8Q+sfgUbUzfGdn1TjOQbP4hzY";

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
                .map_err(|e| Error::internal_from("starting a hasher thread", e))?;
        }
        Ok(Hasher { queue })
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
        let work = move || {
            Ok(match &phc {
                Some(phc) => verify_now(password.as_bytes(), phc),
                None => {
                    let _ = verify_now(password.as_bytes(), DUMMY_PHC);
                    false
                }
            })
        };
        self.submit(work, done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let real = hash_now(b"some password").unwrap();
        let params = |phc: &str| phc.split('$').nth(3).map(str::to_owned);
        assert_eq!(params(DUMMY_PHC), params(&real), "same argon2 parameters");
        assert!(argon2::password_hash::phc::PasswordHash::new(DUMMY_PHC).is_ok());
        assert!(verify_now(b"souk: no such user", DUMMY_PHC));
    }
}
