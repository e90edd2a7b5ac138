//! The project's own HTTP/1.1 server (docs/http.md). Only this module knows the wire
//! format: heads are parsed by httparse, everything else (framing, keep-alive,
//! pipelining, limits, timeouts, the connection cap) is here.
//!
//! Threads (`server.rs`): an acceptor gives each new connection to one of a
//! fixed set of workers; each worker is an event loop on its own epoll
//! (`mio`) that owns its connections, reading, handling and answering their
//! requests. A handler that must wait for a commit returns `Reply::Later`
//! and frees its worker; the answer comes back to that worker's inbox
//! through a `Responder`. A worker stuck in one handler has its waiting
//! connections taken over by another.

mod conn;
pub mod proxy;
mod request;
mod response;
mod server;
pub mod tls;

pub use request::{BadHeader, Headers, Method, Request, RequestId};
pub use response::{Reply, Responder, Response, reason};
pub use server::{Completed, Edge, Limits, Server, ServerHandle, Service};
