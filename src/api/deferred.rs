//! Deferred answers: work that finishes on other threads (a password hash,
//! a commit) as one chain of steps. An error at any step skips the rest and
//! is answered once, in `render`, on the worker that writes the answer.

use super::respond;
use crate::accounts::Password;
use crate::accounts::passwords::Hasher;
use crate::error::Result;
use crate::http::{Reply, Response};
use crate::store::WriteTx;
use crate::store::writer::{Weight, Writer};

/// Where a step's result goes: the rest of the chain.
type Next<T> = Box<dyn FnOnce(Result<T>) + Send>;

/// A value that another thread produces later, and the steps after it.
/// Nothing runs until `render` has made the chain a `Reply` and the HTTP
/// layer has started it with a `Responder`.
pub struct Deferred<T> {
    start: Box<dyn FnOnce(Next<T>) + Send>,
}

impl<T: Send + 'static> Deferred<T> {
    fn new(start: impl FnOnce(Next<T>) + Send + 'static) -> Deferred<T> {
        Deferred {
            start: Box::new(start),
        }
    }

    /// A write through the group-commit writer: the job's result once the
    /// commit made it durable. `work` may run twice (see `Writer::submit`).
    pub fn write<W>(writer: &Writer, weight: Weight, work: W) -> Deferred<T>
    where
        W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    {
        Deferred::write_on(writer.clone(), weight, work)
    }

    fn write_on<W>(writer: Writer, weight: Weight, work: W) -> Deferred<T>
    where
        W: Fn(&WriteTx<'_>) -> Result<T> + Send + 'static,
    {
        Deferred::new(move |next| writer.submit(weight, work, next))
    }

    /// A step on the value where it arrives (a hashing thread, the writer
    /// thread), so it must be short. Not run after an error.
    pub fn and_then<U: Send + 'static>(
        self,
        step: impl FnOnce(T) -> Result<U> + Send + 'static,
    ) -> Deferred<U> {
        Deferred::new(move |next: Next<U>| {
            (self.start)(Box::new(move |result| next(result.and_then(step))));
        })
    }

    /// More deferred work, made from the value. Not run after an error.
    pub fn then<U: Send + 'static>(
        self,
        step: impl FnOnce(T) -> Deferred<U> + Send + 'static,
    ) -> Deferred<U> {
        Deferred::new(move |next: Next<U>| {
            (self.start)(Box::new(move |result| match result {
                Ok(value) => (step(value).start)(next),
                Err(e) => next(Err(e)),
            }));
        })
    }

    /// A write whose job reads the value (each run of it, see `write`).
    pub fn then_write<U, W>(self, writer: &Writer, weight: Weight, work: W) -> Deferred<U>
    where
        U: Send + 'static,
        W: Fn(&T, &WriteTx<'_>) -> Result<U> + Send + 'static,
    {
        let writer = writer.clone();
        self.then(move |value| Deferred::write_on(writer, weight, move |tx| work(&value, tx)))
    }

    /// Looks at the result, an error too, where it arrives (to give back a
    /// reservation, say); must be short.
    pub fn inspect(self, look: impl FnOnce(&Result<T>) + Send + 'static) -> Deferred<T> {
        Deferred::new(move |next: Next<T>| {
            (self.start)(Box::new(move |result| {
                look(&result);
                next(result);
            }));
        })
    }

    /// The reply: runs the chain, then answers with `render`'s response, or
    /// `respond::error` for the error that stopped it. Either is rendered by
    /// the worker that writes the answer, never on the hashing or writer
    /// thread.
    pub fn render(self, render: impl FnOnce(T) -> Response + Send + 'static) -> Reply {
        Reply::Later(Box::new(move |responder| {
            (self.start)(Box::new(move |result| {
                responder.send_with(move || match result {
                    Ok(value) => render(value),
                    Err(e) => respond::error(e),
                });
            }));
        }))
    }
}

impl Deferred<String> {
    /// Hashes `password` on the hasher pool: its PHC string.
    pub fn hash(hasher: &Hasher, password: Password) -> Deferred<String> {
        let hasher = hasher.clone();
        Deferred::new(move |next| hasher.hash(password, next))
    }
}

impl Deferred<bool> {
    /// Checks `password` against `phc` (the dummy hash when `None`, at the
    /// same cost) on the hasher pool: whether it matched.
    pub fn verify(hasher: &Hasher, password: Password, phc: Option<String>) -> Deferred<bool> {
        let hasher = hasher.clone();
        Deferred::new(move |next| hasher.verify(password, phc, next))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::error::Error;
    use crate::http::Responder;

    /// Runs `reply`'s chain; the answer it delivered, still to be made a
    /// response (what the worker that writes it does).
    fn answer(reply: Reply) -> impl FnOnce() -> Response {
        let Reply::Later(start) = reply else {
            panic!("a deferred chain answers later");
        };
        let (sent, received) = mpsc::channel();
        start(Responder {
            deliver: Some(Box::new(move |answer| {
                let _ = sent.send(answer);
            })),
        });
        let delivered = received.recv().unwrap();
        move || delivered.into_response()
    }

    fn ready<T: Send + 'static>(value: Result<T>) -> Deferred<T> {
        Deferred::new(move |next| next(value))
    }

    #[test]
    fn values_flow_through_the_steps_and_render_waits_for_the_worker() {
        let (rendered, renders) = mpsc::channel();
        let reply = ready(Ok(2))
            .and_then(|n| Ok(n * 10))
            .then(|n| ready(Ok(n + 1)))
            .render(move |n| {
                rendered.send(()).unwrap();
                Response::new(if n == 21 { 200 } else { 500 })
            });
        let respond = answer(reply);
        assert!(
            renders.try_recv().is_err(),
            "rendered where the chain ended"
        );
        assert_eq!(respond().status, 200);
        assert!(renders.try_recv().is_ok());
    }

    #[test]
    fn an_error_skips_the_later_steps_and_is_answered_once() {
        let (looked, seen) = mpsc::channel();
        let reply = ready(Ok(1))
            .and_then(|_| Err::<i32, _>(Error::NotFound))
            .then(|_: i32| -> Deferred<i32> { panic!("a step after an error ran") })
            .inspect(move |result| looked.send(result.is_err()).unwrap())
            .render(|_| panic!("rendered a value after an error"));
        assert_eq!(answer(reply)().status, 404);
        assert!(seen.recv().unwrap(), "inspect saw the error");
    }
}
