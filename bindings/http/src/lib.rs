//! phony-server: the REST service over phony's snapshot lifecycle.
//!
//! Teams register a database as a **project** under a **plan**; API tokens scoped to one
//! project (or admin tokens) create, list, restore, diff and export its snapshots over
//! HTTP. Long work (create, restore, export) is a **job**: a row in the metadata database
//! claimed with `FOR UPDATE SKIP LOCKED`, so several servers on one metadata database share
//! the work. Each project's snapshots live in an ordinary phony store (`phony --store` opens
//! it too).
//!
//! Start one with [`Server::start`] (tests, embedding) or [`serve`] (until SIGTERM), as
//! `phony serve` does.

mod app;
mod auth;
mod body;
mod config;
mod diff;
mod docs;
mod error;
mod idempotency;
mod jobs;
mod meta;
mod metrics;
pub mod openapi;
mod plans;
mod problem;
mod projects;
mod routes;
mod secrets;
mod server;
mod snapshots;
mod sweep;
mod tokens;
mod usage;
mod web;
mod work;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{serve, Server};
