//! Starting and stopping a server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::secrets::{new_token, token_hash, SecretKey};
use crate::{jobs, meta, routes, scheduler, sweep, Config, Error, Result};

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    generated_admin_token: Option<String>,
}

impl Server {
    /// Creates and migrates the metadata database, loads the secret key, makes sure an
    /// admin token exists, and starts serving and running jobs.
    pub async fn start(config: Config) -> Result<Server> {
        meta::ensure_database(&config.meta_url).await?;
        meta::migrate(&config.meta_url).await?;
        let key = SecretKey::load(
            config.secret_key.as_deref(),
            &config.data_dir.join("secret.key"),
        )?;
        let pool = meta::pool(&config.meta_url, config.pool_size)?;
        let generated_admin_token = bootstrap_admin(&config).await?;
        let (stop, stopping) = watch::channel(false);
        let app = Arc::new(App::new(config.clone(), pool, key, stopping.clone()));

        // The advisory lock that says "this server is alive" is held before any job is
        // claimed.
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(jobs::listen(
            Arc::clone(&app),
            config.meta_url.clone(),
            Some(locked_tx),
        ));
        if tokio::time::timeout(Duration::from_secs(15), locked_rx)
            .await
            .map_or(true, |r| r.is_err())
        {
            listener.abort();
            return Err(Error::Config(
                "the job listener could not connect to the metadata database".into(),
            ));
        }
        let sweeper = tokio::spawn(sweep::run(Arc::clone(&app)));
        let scheduler = tokio::spawn(scheduler::run(Arc::clone(&app)));
        let workers: Vec<_> = (0..config.workers)
            .map(|_| tokio::spawn(jobs::worker(Arc::clone(&app))))
            .collect();

        let tcp = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Io {
                doing: format!("listening on {}", config.listen),
                source,
            })?;
        let addr = tcp.local_addr().map_err(|source| Error::Io {
            doing: "reading the bound address".into(),
            source,
        })?;
        let router = routes::router(Arc::clone(&app));
        let mut until = stopping.clone();
        let http = axum::serve(tcp, router).with_graceful_shutdown(async move {
            let _ = until.wait_for(|s| *s).await;
        });
        let task = tokio::spawn(async move {
            let served = http.await;
            // Workers take no new job once stopping; a running one finishes, or is
            // cancelled (rolled back) after the grace period and marked.
            for w in workers {
                let _ = w.await;
            }
            sweeper.abort();
            scheduler.abort();
            listener.abort();
            app.pool.close();
            served.map_err(|source| Error::Io {
                doing: "serving".into(),
                source,
            })
        });
        tracing::info!("phony-server listening on http://{addr}");
        Ok(Server {
            addr,
            stop,
            task,
            generated_admin_token,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin token generated at this start (the metadata database had none), if any.
    pub fn generated_admin_token(&self) -> Option<&str> {
        self.generated_admin_token.as_deref()
    }

    /// Stops taking requests and jobs, lets running jobs finish within the grace period
    /// (then cancels them: they roll back and are marked failed), and returns.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Config(format!("the server's task failed: {e}"))),
        }
    }
}

/// Makes sure an admin token exists: `PHONY_ADMIN_TOKEN`'s, or one generated now (returned,
/// to be shown once) when there is none.
async fn bootstrap_admin(config: &Config) -> Result<Option<String>> {
    let mut client = meta::connect(&meta::config(&config.meta_url)?)
        .await
        .map_err(|e| Error::meta("connecting to the metadata database", e))?;
    let m = |e| Error::meta("creating the first admin token", e);
    let tx = client.transaction().await.map_err(m)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&0x7068_6f6e_792d_6164_i64],
    )
    .await
    .map_err(m)?;
    let generated = match &config.admin_token {
        Some(token) => {
            if token.len() < 32 {
                return Err(Error::Config(
                    "PHONY_ADMIN_TOKEN must have at least 32 characters".into(),
                ));
            }
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM tokens WHERE hash = $1",
                    &[&token_hash(token)],
                )
                .await
                .map_err(m)?;
            if exists.is_none() {
                crate::tokens::insert(&tx, None, token).await.map_err(m)?;
            }
            None
        }
        None => {
            let any = tx
                .query_opt(
                    "SELECT 1 FROM tokens WHERE project_id IS NULL AND revoked_at IS NULL",
                    &[],
                )
                .await
                .map_err(m)?;
            match any {
                Some(_) => None,
                None => {
                    let token = new_token();
                    crate::tokens::insert(&tx, None, &token).await.map_err(m)?;
                    Some(token)
                }
            }
        }
    };
    tx.commit().await.map_err(m)?;
    Ok(generated)
}

/// Runs a server until SIGTERM or Ctrl-C, then stops it gracefully.
pub async fn serve(config: Config) -> Result<()> {
    // Listening for the signals first: a SIGTERM that arrives while the server starts is
    // answered like any other.
    let signal = tokio::spawn(shutdown_signal()?);
    let server = Server::start(config).await?;
    // Written as lines that may go nowhere: a closed stdout is no reason to stop serving.
    let say = |line: String| {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    if let Some(token) = server.generated_admin_token() {
        say(format!("admin token (shown once; keep it): {token}"));
    }
    say(format!("phony-server listening on {}", server.url()));
    say(format!("API documentation: {}/docs", server.url()));
    let _ = signal.await;
    eprintln!("phony-server: stopping (running jobs finish or roll back)");
    server.stop().await
}

/// Completes on SIGTERM or Ctrl-C; the handlers are installed when this is called.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let io = |source| Error::Io {
        doing: "listening for signals".into(),
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
