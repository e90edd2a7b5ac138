//! The project's own HTTP/1.1 server (docs/http.md). Only this module knows the wire
//! format: heads are parsed by httparse, everything else (framing, keep-alive,
//! pipelining, limits, timeouts, the connection cap) is here.
//!
//! Threads: one I/O thread (in `server.rs`, on a `polling::Poller`) accepts
//! connections and watches idle ones with epoll; a fixed pool of workers reads, handles and answers
//! requests of connections that have data. A handler that must wait for a
//! commit returns `Reply::Later` and frees its worker; the answer comes back
//! to the pool through a `Responder`.

mod conn;
pub mod proxy;
mod request;
mod response;
mod server;
pub mod tls;

pub use request::{BadHeader, Method, Request, RequestId};
pub use response::{Reply, Responder, Response, reason};
pub use server::{Completed, Edge, Limits, Server, ServerHandle, Service};
