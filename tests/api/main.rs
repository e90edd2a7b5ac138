//! The integration tests: one binary, one module per area. Every test starts
//! its own server on port 0 with a fresh database and talks to it over TCP
//! (raw bytes, so the HTTP layer's framing is tested as the wire sees it).

mod binary;
mod client;
mod console;
mod console_browser;
mod cors;
mod crash;
mod escrow;
mod feedback;
mod health;
mod helpers;
mod hostile;
mod http_layer;
mod json_bodies;
mod lifecycle;
mod listings;
mod logs;
mod monitoring;
mod openapi;
mod operations;
mod order_model;
mod orders;
mod proxies;
mod resilience;
mod seeded;
mod systemd;
mod tls;
mod users;
mod wallets;
