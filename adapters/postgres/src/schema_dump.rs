//! Schema capture with pg_dump: pre-data DDL (run before rows are loaded) and post-data
//! DDL (keys, indexes, foreign keys, triggers: run after), read at the capture's exported
//! snapshot so schema and rows are one point in time.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::catalog::PHONY_SCHEMA;
use crate::connect::{with_pinned_settings, ConnectionTarget};
use crate::error::{Error, Result};
use crate::tracking::TRIGGER_PREFIX;

/// The environment variable that names a pg_dump binary explicitly.
pub const PG_DUMP_ENV: &str = "PHONY_PG_DUMP";

/// A pg_dump binary and its major version.
#[derive(Debug, Clone)]
pub struct PgDump {
    pub path: PathBuf,
    pub major: u32,
}

/// Which part of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    PreData,
    PostData,
}

impl Section {
    fn arg(self) -> &'static str {
        match self {
            Section::PreData => "--section=pre-data",
            Section::PostData => "--section=post-data",
        }
    }
}

impl PgDump {
    /// Finds a pg_dump able to dump a server of major version `server_major`: `$PHONY_PG_DUMP`
    /// if set (and then only it), else the server's own major version under
    /// `/usr/lib/postgresql`, else `pg_config --bindir`, else `PATH`.
    pub async fn find(server_major: u32) -> Result<Self> {
        if let Some(explicit) = std::env::var_os(PG_DUMP_ENV).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(explicit);
            let found = Self::probe(&path).await.ok_or_else(|| {
                Error::PgDump(format!(
                    "pg_dump not found or not runnable at {} (from {PG_DUMP_ENV})",
                    path.display()
                ))
            })?;
            return found.check(server_major);
        }
        let mut candidates = vec![PathBuf::from(format!(
            "/usr/lib/postgresql/{server_major}/bin/pg_dump"
        ))];
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                candidates.push(Path::new(&dir).join("pg_dump"));
            }
        }
        candidates.push(PathBuf::from("pg_dump"));
        let mut best: Option<PgDump> = None;
        for c in candidates {
            if let Some(found) = Self::probe(&c).await {
                if found.major >= server_major {
                    return Ok(found);
                }
                best.get_or_insert(found);
            }
        }
        match best {
            Some(b) => b.check(server_major),
            None => Err(Error::PgDump(format!(
                "pg_dump not found: install the PostgreSQL {server_major} client tools or set {PG_DUMP_ENV}"
            ))),
        }
    }

    fn check(self, server_major: u32) -> Result<Self> {
        if self.major < server_major {
            return Err(Error::PgDump(format!(
                "{} is version {}, older than the server ({server_major}); install pg_dump {server_major} or newer, or point {PG_DUMP_ENV} at one",
                self.path.display(),
                self.major
            )));
        }
        Ok(self)
    }

    async fn probe(path: &Path) -> Option<PgDump> {
        let out = Command::new(path).arg("--version").output().await.ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // "pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)"
        let version = text
            .split_whitespace()
            .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
        let major = version.split(['.', 'b', 'r', 'd']).next()?.parse().ok()?;
        Some(PgDump {
            path: path.to_owned(),
            major,
        })
    }

    /// Dumps one section of the schema of `target`, at `snapshot` (an exported snapshot id)
    /// when given, with psql meta-commands (`\restrict` …) removed.
    pub async fn dump(
        &self,
        target: &ConnectionTarget,
        section: Option<Section>,
        snapshot: Option<&str>,
    ) -> Result<String> {
        let mut cmd = Command::new(&self.path);
        // UTF-8 whatever the database's encoding (the script is stored as text and run on
        // UTF-8 sessions), and the settings phony's own sessions pin (a default's constant
        // is printed in the session's time zone, say).
        cmd.arg("--schema-only")
            .arg("--no-password")
            .arg("--encoding=UTF8")
            .arg(format!("--exclude-schema={PHONY_SCHEMA}"))
            .env_remove("PGSERVICE")
            .envs(target.libpq_env())
            .env("PGOPTIONS", with_pinned_settings(None))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(s) = section {
            cmd.arg(s.arg());
        }
        if let Some(snap) = snapshot {
            cmd.arg(format!("--snapshot={snap}"));
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| Error::PgDump(format!("running {}: {e}", self.path.display())))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(Error::PgDump(format!("pg_dump failed: {}", first.trim())));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| Error::PgDump("pg_dump printed text that is not UTF-8".into()))?;
        Ok(strip_tracking(&strip_meta_commands(&text)))
    }
}

/// Removes psql meta-command lines (`\restrict KEY` and the like): they are not SQL, and
/// their random keys would make every dump look new.
pub fn strip_meta_commands(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        if !line.starts_with('\\') {
            out.push_str(line);
        }
    }
    out
}

/// Removes the objects change tracking puts outside its schema (the triggers on user
/// tables and its event triggers), so that a tracked database dumps like an untracked one.
pub fn strip_tracking(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut skipping = false;
    for line in script.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("-- Name: ") {
            skipping = is_tracking_object(header);
        } else if line.starts_with("-- PostgreSQL database dump complete") {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
        }
    }
    out
}

/// Whether a dump block header (`<name>; Type: <type>; …`) names a tracking object.
fn is_tracking_object(header: &str) -> bool {
    let mut parts = header.split("; ");
    let name = parts.next().unwrap_or("");
    let kind = parts.next().unwrap_or("");
    match kind {
        "Type: TRIGGER" => name
            .rsplit(' ')
            .next()
            .is_some_and(|trigger| trigger.starts_with(TRIGGER_PREFIX)),
        "Type: EVENT TRIGGER" => name.starts_with(TRIGGER_PREFIX),
        _ => false,
    }
}

/// The line by which a pg_dump script sets its session's client encoding.
const CLIENT_ENCODING: &str = "SET client_encoding = ";

/// The script with its `SET client_encoding = …;` lines setting `UTF8`: the sessions that
/// run a stored script go on to load rows, which are UTF-8 (snapshots taken before pg_dump
/// was asked for UTF-8 set the database's encoding there, and a restore of a `LATIN1`
/// database then read `Grüße` as `GrÃ¼Ãe`). Such a script is ASCII (a capture refuses
/// pg_dump output that is not UTF-8), so it means the same under either encoding.
pub fn with_utf8_client_encoding(script: String) -> String {
    if !script.lines().any(|l| l.starts_with(CLIENT_ENCODING)) {
        return script;
    }
    let mut out = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        match line.starts_with(CLIENT_ENCODING) {
            true => out.push_str("SET client_encoding = 'UTF8';\n"),
            false => out.push_str(line),
        }
    }
    out
}

/// The dump without comments, blank lines and the client encoding it was written in: what
/// two equal schemas share exactly.
pub fn normalize(script: &str) -> String {
    script
        .lines()
        .filter(|l| !l.starts_with("--") && !l.starts_with('\\') && !l.trim().is_empty())
        .filter(|l| !l.starts_with(CLIENT_ENCODING))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_objects_are_removed_exactly() {
        let untracked = "--\n-- Name: t t_audit; Type: TRIGGER; Schema: public; Owner: postgres\n--\n\nCREATE TRIGGER t_audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f();\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n";
        let tracked = "--\n-- Name: t phony_track_i; Type: TRIGGER; Schema: public; Owner: postgres\n--\n\nCREATE TRIGGER phony_track_i AFTER INSERT ON public.t REFERENCING NEW TABLE AS phony_new FOR EACH STATEMENT EXECUTE FUNCTION phony.track_rows('ARRAY[r.id::text]');\n\n\n--\n-- Name: t t_audit; Type: TRIGGER; Schema: public; Owner: postgres\n--\n\nCREATE TRIGGER t_audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f();\n\n\n--\n-- Name: phony_track_ddl; Type: EVENT TRIGGER; Schema: -; Owner: postgres\n--\n\nCREATE EVENT TRIGGER phony_track_ddl ON ddl_command_end\n         EXECUTE FUNCTION phony.track_ddl();\n\n\nALTER EVENT TRIGGER phony_track_ddl OWNER TO postgres;\n\n--\n-- PostgreSQL database dump complete\n--\n\n";
        assert_eq!(strip_tracking(tracked), untracked);
        assert_eq!(strip_tracking(untracked), untracked);
    }

    #[test]
    fn stored_scripts_set_utf8_as_the_client_encoding() {
        let latin1 =
            "SET lock_timeout = 0;\nSET client_encoding = 'LATIN1';\nCREATE TABLE t (a text);\n";
        let utf8 =
            "SET lock_timeout = 0;\nSET client_encoding = 'UTF8';\nCREATE TABLE t (a text);\n";
        assert_eq!(with_utf8_client_encoding(latin1.to_owned()), utf8);
        assert_eq!(with_utf8_client_encoding(utf8.to_owned()), utf8);
        assert_eq!(normalize(latin1), normalize(utf8));
    }

    #[test]
    fn meta_commands_are_removed() {
        let s = "\\restrict abc\nSET x = 1;\nCREATE TABLE t (a int);\n\\unrestrict abc\n";
        assert_eq!(
            strip_meta_commands(s),
            "SET x = 1;\nCREATE TABLE t (a int);\n"
        );
        assert_eq!(
            normalize("-- c\n\nSET x = 1;\n\\restrict k\n"),
            "SET x = 1;"
        );
    }
}
