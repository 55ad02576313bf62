//! Where to connect: a connection string plus libpq's environment defaults, shown without
//! its password.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{describe, Error, Result};

/// A database to connect to. Its `Display` never shows the password.
#[derive(Clone)]
pub struct ConnectionTarget {
    config: Config,
}

impl fmt::Debug for ConnectionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionTarget({self})")
    }
}

impl ConnectionTarget {
    /// Parses a URL (`postgres://user:pass@host:port/db`) or key/value string
    /// (`host=… dbname=…`), then fills what it leaves out from libpq's environment
    /// (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`) and libpq's defaults.
    /// `None` means "environment and defaults only".
    pub fn parse(conn: Option<&str>) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut config = match conn.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Config::from_str(s)
                .map_err(|e| Error::InvalidTarget(redact_error(&e.to_string(), s)))?,
            None => Config::new(),
        };
        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(h) => {
                    for host in h.split(',') {
                        config.host(host);
                    }
                }
                None => {
                    let socket_dir = "/var/run/postgresql";
                    if std::path::Path::new(socket_dir).is_dir() {
                        config.host(socket_dir);
                    } else {
                        config.host("localhost");
                    }
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
        Ok(ConnectionTarget { config })
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
        let mut config = self.config.clone();
        config.dbname(dbname);
        ConnectionTarget { config }
    }

    /// The same target with an `application_name`.
    pub fn with_application_name(&self, name: &str) -> Self {
        let mut config = self.config.clone();
        config.application_name(name);
        ConnectionTarget { config }
    }

    /// Connects (without TLS), driving the connection on the current runtime. The session
    /// runs with [`PINNED_SETTINGS`], whatever the role's or the database's defaults are.
    pub async fn connect(&self) -> Result<Client> {
        let mut config = self.config.clone();
        config.options(with_pinned_settings(self.config.get_options()));
        let (client, connection) = config.connect(NoTls).await.map_err(|e| Error::Connect {
            target: self.to_string(),
            message: describe(&e),
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
        });
        Ok(client)
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
        env
    }
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
