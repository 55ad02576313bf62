//! Where to connect: a connection string plus, unless a caller asks otherwise, libpq's
//! environment defaults; TLS with libpq's `sslmode` meanings ([`crate::tls`]); shown
//! without its password.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::{Client, Config, NoTls};

use crate::conninfo::{self, SslMode, TlsParams};
use crate::error::{describe, Error, Result};
use crate::tls::TlsSettings;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Whether a connection string is completed from the process's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// As libpq: `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, the local socket directory and the files
    /// under `~/.postgresql/` fill what the string leaves out.
    #[default]
    Inherit,
    /// Only the string counts: it must name a host; the user defaults to `postgres`, the
    /// database to the user, `sslmode` to `prefer`; no file of the process's user is read.
    /// For services that connect on behalf of others.
    Ignore,
}

/// A database to connect to. Its `Display` never shows the password.
#[derive(Clone)]
pub struct ConnectionTarget {
    config: Config,
    tls: TlsSettings,
    environment: Environment,
    /// The TLS connector, built on the first TLS connection (it reads certificate files)
    /// and shared by the clones of this target, whose TLS settings are the same.
    connector: Arc<OnceLock<MakeRustlsConnect>>,
}

impl fmt::Debug for ConnectionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionTarget({self})")
    }
}

impl ConnectionTarget {
    /// Parses a URL (`postgres://user:pass@host:port/db?sslmode=…`) or key/value string
    /// (`host=… dbname=…`), then fills what it leaves out from libpq's environment
    /// (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, …) and
    /// libpq's defaults. `None` means "environment and defaults only".
    pub fn parse(conn: Option<&str>) -> Result<Self> {
        Self::parse_with(conn, Environment::Inherit)
    }

    /// Parses `conn`, completing it from the environment or not, as `environment` says.
    pub fn parse_with(conn: Option<&str>, environment: Environment) -> Result<Self> {
        let inherit = environment == Environment::Inherit;
        let env = |k: &str| {
            if inherit {
                std::env::var(k).ok().filter(|v| !v.is_empty())
            } else {
                None
            }
        };
        let (mut config, params) = match conn.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => {
                let parsed =
                    conninfo::parse(s).map_err(|m| Error::InvalidTarget(redact_error(&m, s)))?;
                (parsed.config, parsed.tls)
            }
            None => (Config::new(), TlsParams::default()),
        };
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    for host in h.split(',') {
                        config.host(host);
                    }
                }
                None if inherit => {
                    let socket_dir = "/var/run/postgresql";
                    if std::path::Path::new(socket_dir).is_dir() {
                        config.host(socket_dir);
                    } else {
                        config.host("localhost");
                    }
                }
                None => {
                    return Err(Error::InvalidTarget(
                        "the connection string names no host (the process environment is not consulted)"
                            .to_owned(),
                    ))
                }
            }
        }
        if config.get_ports().is_empty() {
            let port = match env("PGPORT") {
                Some(p) => p.parse().map_err(|_| {
                    Error::InvalidTarget(format!("PGPORT={p:?} is not a port number"))
                })?,
                None => 5432,
            };
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .or_else(|| env("LOGNAME"))
                .unwrap_or_else(|| "postgres".to_owned());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE")
                .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_owned());
            config.dbname(&db);
        }
        if config.get_password().is_none() {
            if let Some(p) = env("PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let mode = match params.mode {
            Some(m) => m,
            None => match env("PGSSLMODE") {
                Some(m) => m
                    .parse()
                    .map_err(|e: String| Error::InvalidTarget(format!("PGSSLMODE: {e}")))?,
                None => SslMode::Prefer,
            },
        };
        // libpq's default files, when the environment counts.
        let default_file = |name: &str| -> Option<String> {
            if !inherit {
                return None;
            }
            let home = std::env::var_os("HOME")?;
            let path = PathBuf::from(home).join(".postgresql").join(name);
            path.is_file().then(|| path.display().to_string())
        };
        let tls = TlsSettings {
            mode,
            root_cert: params
                .root_cert
                .or_else(|| env("PGSSLROOTCERT"))
                .or_else(|| default_file("root.crt")),
            cert: params
                .cert
                .or_else(|| env("PGSSLCERT"))
                .or_else(|| default_file("postgresql.crt")),
            key: params
                .key
                .or_else(|| env("PGSSLKEY"))
                .or_else(|| default_file("postgresql.key")),
        };
        Ok(ConnectionTarget {
            config,
            tls,
            environment,
            connector: Arc::default(),
        })
    }

    /// The TLS mode in force.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut target = self.clone();
        target.config.dbname(dbname);
        target
    }

    /// The same target with an `application_name`.
    pub fn with_application_name(&self, name: &str) -> Self {
        let mut target = self.clone();
        target.config.application_name(name);
        target
    }

    /// Connects, with TLS as `sslmode` says, driving the connection on the current runtime.
    /// The session runs with [`PINNED_SETTINGS`], whatever the role's or the database's
    /// defaults are.
    pub async fn connect(&self) -> Result<Client> {
        let over_socket = matches!(self.config.get_hosts().first(), Some(Host::Unix(_)));
        let connect_error = |e: tokio_postgres::Error| Error::Connect {
            target: self.to_string(),
            message: describe(&e),
            code: crate::error::sqlstate(&e),
        };
        let mut config = self.config.clone();
        config.options(with_pinned_settings(self.config.get_options()));
        let client = if over_socket || self.tls.mode == SslMode::Disable {
            config.ssl_mode(DriverSslMode::Disable);
            let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
            drive(connection);
            client
        } else {
            config.ssl_mode(match self.tls.mode {
                SslMode::Allow | SslMode::Prefer => DriverSslMode::Prefer,
                _ => DriverSslMode::Require,
            });
            let (client, connection) = config
                .connect(self.tls_connector()?)
                .await
                .map_err(connect_error)?;
            drive(connection);
            client
        };
        Ok(client)
    }

    /// The TLS connector for this target's settings, built once.
    fn tls_connector(&self) -> Result<MakeRustlsConnect> {
        if let Some(c) = self.connector.get() {
            return Ok(c.clone());
        }
        let built = self.tls.connector()?;
        Ok(self.connector.get_or_init(|| built).clone())
    }

    /// Makes a libpq tool (pg_dump) started by `cmd` reach this target as [`Self::connect`]
    /// does: the process's own `PG*` variables are removed and this target's set (the
    /// password travels in the environment, never on a command line).
    pub fn configure_libpq_command(&self, cmd: &mut tokio::process::Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.libpq_env());
    }

    /// Environment variables that make libpq tools (pg_dump) reach this target; the
    /// password travels in the environment, never on a command line.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            let h = match host {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            env.push(("PGHOST", h));
        }
        if let Some(port) = self.config.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        env.push(("PGUSER", self.user().to_owned()));
        env.push(("PGDATABASE", self.dbname().to_owned()));
        if let Some(p) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(p).into_owned()));
        }
        env.push(("PGCONNECT_TIMEOUT", "10".to_owned()));
        env.push(("PGSSLMODE", self.tls.mode.as_str().to_owned()));
        // Files libpq would otherwise look for under ~/.postgresql/: a path that does not
        // exist makes it look nowhere, as this target's own connections do.
        let nowhere = "/nonexistent/phony-no-file";
        for (var, value) in [
            ("PGSSLROOTCERT", &self.tls.root_cert),
            ("PGSSLCERT", &self.tls.cert),
            ("PGSSLKEY", &self.tls.key),
        ] {
            env.push((var, value.clone().unwrap_or_else(|| nowhere.to_owned())));
        }
        if self.environment == Environment::Ignore {
            env.push(("PGPASSFILE", nowhere.to_owned()));
        }
        if let Some(name) = self.config.get_application_name() {
            env.push(("PGAPPNAME", name.to_owned()));
        }
        env
    }
}

/// Drives a connection on the current runtime until it closes.
fn drive<F, E>(connection: F)
where
    F: std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: fmt::Display,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection closed: {e}");
        }
    });
}

impl fmt::Display for ConnectionTarget {
    /// `postgres://user@host:port/db`, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user(),
            host,
            port,
            self.dbname()
        )
    }
}

/// The settings every session phony opens runs with, sent in the startup packet (they
/// override `ALTER DATABASE … SET` and `ALTER ROLE … SET` defaults). Rows travel as text:
/// their text must not depend on who connects to which database, or a snapshot would hold
/// π as `3.14159265359` under `extra_float_digits = -3`, dates a `--target` cannot read
/// back under `DateStyle = 'SQL, DMY'`, or timestamps in the zone of whoever took it.
/// `row_security = off` makes a query that a row-level security policy would filter fail
/// instead: a snapshot never holds, and a restore never rewrites, only the rows a policy
/// shows. Timeouts meant for applications' queries do not cut a capture or a restore short
/// (restores set their own `lock_timeout`), as pg_dump does.
pub const PINNED_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"),
    ("row_security", "off"),
    ("statement_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
];

/// The `options` startup parameter (`-c name=value …`, spaces and backslashes escaped)
/// setting [`PINNED_SETTINGS`] after `given` (the connection string's own options), so
/// that they win.
pub fn with_pinned_settings(given: Option<&str>) -> String {
    let mut out = given.unwrap_or("").trim().to_owned();
    for (name, value) in PINNED_SETTINGS {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("-c ");
        for c in format!("{name}={value}").chars() {
            if c == ' ' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Removes the password of `conn` from a parse error message, should the parser echo it.
fn redact_error(message: &str, conn: &str) -> String {
    match password_of(conn) {
        Some(p) if !p.is_empty() => message.replace(&p, "****"),
        _ => message.to_owned(),
    }
}

fn password_of(conn: &str) -> Option<String> {
    let rest = conn.split_once("://")?.1;
    let userinfo = rest.split('@').next().filter(|_| rest.contains('@'))?;
    userinfo.split_once(':').map(|(_, p)| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_shows_the_password() {
        let t =
            ConnectionTarget::parse(Some("postgres://alice:s3cret@db.example:6543/app")).unwrap();
        assert_eq!(t.to_string(), "postgres://alice@db.example:6543/app");
        assert!(!format!("{t:?}").contains("s3cret"));
        let kv =
            ConnectionTarget::parse(Some("host=h port=1 user=u password=s3cret dbname=d")).unwrap();
        assert_eq!(kv.to_string(), "postgres://u@h:1/d");
    }

    #[test]
    fn malformed_strings_are_refused_without_echoing_secrets() {
        let err = ConnectionTarget::parse(Some("postgres://u:s3cret@h:notaport/d")).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn pinned_settings_come_after_the_given_options_and_are_escaped() {
        let options = with_pinned_settings(Some("-c work_mem=8MB"));
        assert!(options.starts_with("-c work_mem=8MB -c client_encoding=UTF8 "));
        assert!(options.contains(" -c DateStyle=ISO,\\ MDY "), "{options}");
        assert!(options.contains(" -c row_security=off "), "{options}");
        assert!(with_pinned_settings(None).starts_with("-c client_encoding=UTF8"));
    }

    #[test]
    fn with_dbname_keeps_the_rest() {
        let t = ConnectionTarget::parse(Some("postgres://u@h:5/a"))
            .unwrap()
            .with_dbname("b");
        assert_eq!(t.to_string(), "postgres://u@h:5/b");
    }
}
