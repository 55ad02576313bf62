//! phony-server through real HTTP on a bound port, against the real PostgreSQL: each test
//! has its own metadata database, project databases and stores, dropped after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod integration {
    pub mod cluster;
    pub mod support;

    mod auth;
    mod bad_input;
    mod export;
    mod hooks;
    mod jobs;
    mod metadata_restart;
    mod openapi;
    mod plans;
    mod projects;
    mod schedules;
    mod service;
    mod snapshots;
    mod syncs;
    mod timeline;
    mod web;
}
