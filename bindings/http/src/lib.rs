//! phony-server: the REST service over phony's snapshot lifecycle.
//!
//! Teams register a database as a **project** under a **plan**; API tokens scoped to one
//! project (or admin tokens) create, list, restore, diff and export its snapshots over
//! HTTP. Long work (create, restore, export) is a **job**: a row in the metadata database
//! claimed with `FOR UPDATE SKIP LOCKED`, so several servers on one metadata database share
//! the work. Each project's snapshots live in an ordinary phony store (`phony --store` opens
//! it too).
//!
//! Around them, automation (docs/server.md, "Automation"): syncs from a source
//! database with snapshots either side, cron schedules, sprint-end webhooks from Jira and
//! Linear, retention that runs itself, and a timeline of it all.
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
mod hooks;
mod idempotency;
mod jobs;
mod meta;
mod metrics;
pub mod openapi;
mod plans;
mod problem;
mod projects;
mod retention;
mod routes;
mod scheduler;
mod schedules;
mod secrets;
mod server;
mod snapshots;
mod sweep;
mod syncs;
mod timeline;
mod tokens;
mod usage;
mod web;
mod work;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{serve, Server};
