//! Runnable examples of phony live in this directory; see `quickstart/main.rs`.
