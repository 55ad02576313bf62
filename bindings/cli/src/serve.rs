//! `phony serve`: the REST service (the `phony-server` crate), until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "PHONY_LISTEN"
    )]
    pub listen: SocketAddr,
    /// The server's metadata database (created if missing, migrated at start)
    #[arg(
        long,
        value_name = "URL",
        env = "PHONY_META_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/phony_meta"
    )]
    pub meta: String,
    /// Where project stores go: a directory or s3://bucket/prefix (one store per project under it)
    #[arg(
        long,
        value_name = "DIR|URL",
        env = "PHONY_STORE_ROOT",
        default_value = "./phony-data"
    )]
    pub store_root: String,
    /// The server's own files: the secret key file (if PHONY_SECRET_KEY is unset), finished exports
    #[arg(
        long,
        value_name = "DIR",
        env = "PHONY_DATA_DIR",
        default_value = "./phony-data"
    )]
    pub data_dir: PathBuf,
    /// Jobs run at once by this server (0: an API-only server that runs none)
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub workers: usize,
    /// How often expired snapshots are deleted, e.g. 1m
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,
    /// On SIGTERM, how long running jobs may take before they are cancelled (rolled back), e.g. 30s
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let config = phony_server::Config {
        listen: args.listen,
        meta_url: args.meta,
        store_root: args.store_root,
        data_dir: args.data_dir,
        admin_token: std::env::var("PHONY_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        secret_key: std::env::var("PHONY_SECRET_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        workers: args.workers,
        sweep_interval: args.sweep_interval,
        shutdown_grace: args.shutdown_grace,
        ..phony_server::Config::default()
    };
    phony_server::serve(config).await.context("serving")
}
