//! Schema capture with pg_dump: pre-data DDL (run before rows are loaded) and post-data
//! DDL (keys, indexes, foreign keys, triggers: run after), read at the capture's exported
//! snapshot so schema and rows are one point in time.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::connect::{with_pinned_settings, ConnectionTarget};
use crate::error::{pg, Error, Result};
use crate::read::catalog::PHONY_SCHEMA;
use crate::sql::literal;

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
    /// when given, with psql meta-commands (`\restrict` …) removed and without the objects
    /// change tracking puts outside its schema.
    ///
    /// pg_dump writes an archive whose table of contents lists every object by catalog and
    /// OID; phony's triggers are found by OID in the catalog (at the same snapshot) and left
    /// out of the list pg_restore then turns into SQL. Object names, which may hold any text
    /// (`; Type: TRIGGER`, newlines), are never parsed.
    pub async fn dump(
        &self,
        target: &ConnectionTarget,
        section: Option<Section>,
        snapshot: Option<&str>,
    ) -> Result<String> {
        let (archive, list) = self.archive(target, section, snapshot).await?;
        self.script(target, &archive, &list, None).await
    }

    /// Both sections of the schema of `target`, as [`dump`](Self::dump) gives them one at a
    /// time, from one pg_dump run: pg_dump's start (reading the catalog, locking every
    /// table) costs more than a second pg_restore of its archive, whose scripts are the
    /// same text.
    pub async fn dump_sections(
        &self,
        target: &ConnectionTarget,
        snapshot: Option<&str>,
    ) -> Result<(String, String)> {
        let (archive, list) = self.archive(target, None, snapshot).await?;
        tokio::try_join!(
            self.script(target, &archive, &list, Some(Section::PreData)),
            self.script(target, &archive, &list, Some(Section::PostData))
        )
    }

    /// A schema-only archive of `target` (one section, or all) and its list without the
    /// objects change tracking puts outside its schema.
    async fn archive(
        &self,
        target: &ConnectionTarget,
        section: Option<Section>,
        snapshot: Option<&str>,
    ) -> Result<(Vec<u8>, String)> {
        let mut cmd = Command::new(&self.path);
        // UTF-8 whatever the database's encoding (the script is stored as text and run on
        // UTF-8 sessions), and the settings phony's own sessions pin (a default's constant
        // is printed in the session's time zone, say).
        cmd.arg("--schema-only")
            .arg("--no-password")
            .arg("--format=custom")
            .arg("--compress=0")
            .arg("--encoding=UTF8")
            .arg(format!("--exclude-schema={PHONY_SCHEMA}"));
        if let Some(s) = section {
            cmd.arg(s.arg());
        }
        if let Some(snap) = snapshot {
            cmd.arg(format!("--snapshot={snap}"));
        }
        let archive = self.run(cmd, target, None, "pg_dump").await?;
        let mut list = self.pg_restore();
        list.arg("--list");
        let list = self.run(list, target, Some(&archive), "pg_restore").await?;
        let list = String::from_utf8(list)
            .map_err(|_| Error::PgDump("pg_restore listed text that is not UTF-8".into()))?;
        let tracking = if list_has_triggers(&list) {
            tracking_objects(target, snapshot).await?
        } else {
            Vec::new()
        };
        Ok((archive, without_objects(&list, &tracking)))
    }

    /// The script of `archive`'s objects in `list` (of `section` only, when given), without
    /// psql meta-commands.
    async fn script(
        &self,
        target: &ConnectionTarget,
        archive: &[u8],
        list: &str,
        section: Option<Section>,
    ) -> Result<String> {
        let list_file = ListFile::write(list)?;
        let mut restore = self.pg_restore();
        restore.arg("--use-list").arg(&list_file.0).arg("--file=-");
        if let Some(s) = section {
            restore.arg(s.arg());
        }
        let text = self
            .run(restore, target, Some(archive), "pg_restore")
            .await?;
        drop(list_file);
        let text = String::from_utf8(text)
            .map_err(|_| Error::PgDump("pg_dump printed text that is not UTF-8".into()))?;
        Ok(strip_meta_commands(&text))
    }

    /// pg_restore beside this pg_dump, else the one on `PATH`.
    fn pg_restore(&self) -> Command {
        let path = match self.path.parent() {
            Some(dir) if dir.join("pg_restore").is_file() => dir.join("pg_restore"),
            _ => PathBuf::from("pg_restore"),
        };
        Command::new(path)
    }

    /// Runs `cmd` (pg_dump or pg_restore) with `input` on its standard input; its output.
    async fn run(
        &self,
        mut cmd: Command,
        target: &ConnectionTarget,
        input: Option<&[u8]>,
        what: &str,
    ) -> Result<Vec<u8>> {
        use tokio::io::AsyncWriteExt;
        target.configure_libpq_command(&mut cmd);
        cmd.env("PGOPTIONS", with_pinned_settings(None));
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Error::PgDump(format!(
                "running {what} (beside {}): {e}",
                self.path.display()
            ))
        })?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let (Some(bytes), Some(mut stdin)) = (input, stdin) {
                // A child that stops reading early says why on its standard error.
                let _ = stdin.write_all(bytes).await;
            }
        };
        let (out, ()) = tokio::join!(child.wait_with_output(), feed);
        let out = out.map_err(|e| Error::PgDump(format!("running {what}: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(Error::PgDump(format!("{what} failed: {}", first.trim())));
        }
        Ok(out.stdout)
    }
}

/// A pg_restore list in a file of its own, removed when dropped.
struct ListFile(PathBuf);

impl ListFile {
    fn write(list: &str) -> Result<ListFile> {
        use std::io::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "phony-dump-{}-{}-{nanos}.list",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::PgDump(format!("writing {}: {e}", path.display())))?;
        let written = ListFile(path);
        file.write_all(list.as_bytes())
            .map_err(|e| Error::PgDump(format!("writing {}: {e}", written.0.display())))?;
        Ok(written)
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The object an archive's table-of-contents entry creates: `(catalog, oid)`.
type CatalogId = (u32, u32);

/// The object of a pg_restore list line (`id; catalog oid TYPE …`) and the text after its
/// OID; `None` for comment lines.
fn list_entry(line: &str) -> Option<(CatalogId, &str)> {
    if line.starts_with(';') {
        return None;
    }
    let (_, rest) = line.split_once("; ")?;
    let mut fields = rest.splitn(3, ' ');
    let catalog = fields.next()?.parse().ok()?;
    let oid = fields.next()?.parse().ok()?;
    Some(((catalog, oid), fields.next().unwrap_or("")))
}

/// Whether a pg_restore list holds any trigger or event trigger.
fn list_has_triggers(list: &str) -> bool {
    list.lines()
        .filter_map(list_entry)
        .any(|(_, rest)| rest.starts_with("TRIGGER ") || rest.starts_with("EVENT TRIGGER "))
}

/// The list without the entries of `objects`.
fn without_objects(list: &str, objects: &[CatalogId]) -> String {
    list.split_inclusive('\n')
        .filter(|line| !list_entry(line).is_some_and(|(id, _)| objects.contains(&id)))
        .collect()
}

/// The triggers and event triggers change tracking installs (those that run functions of
/// its schema), read at `snapshot` when given.
async fn tracking_objects(
    target: &ConnectionTarget,
    snapshot: Option<&str>,
) -> Result<Vec<CatalogId>> {
    let client = target.connect().await?;
    let mut begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;".to_owned();
    if let Some(snap) = snapshot {
        begin += &format!(" SET TRANSACTION SNAPSHOT {};", literal(snap));
    }
    let context = "reading change tracking's triggers";
    client.batch_execute(&begin).await.map_err(pg(context))?;
    let rows = client
        .query(
            "SELECT 'pg_catalog.pg_trigger'::regclass::oid, t.oid
               FROM pg_catalog.pg_trigger t
               JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1
             UNION ALL
             SELECT 'pg_catalog.pg_event_trigger'::regclass::oid, e.oid
               FROM pg_catalog.pg_event_trigger e
               JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1",
            &[&PHONY_SCHEMA],
        )
        .await
        .map_err(pg(context))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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
    fn list_entries_are_read_by_catalog_and_oid_whatever_the_names() {
        let list = ";\n; Archive created at 2026-01-01\n;\n\
            3361; 2620 16420 TRIGGER public t phony_track_i postgres\n\
            3362; 2620 16421 TRIGGER public x phony_track_y; Type: TRIGGER t_audit postgres\n\
            3363; 3466 16430 EVENT TRIGGER - phony_track_ddl postgres\n\
            3364; 2606 16440 CONSTRAINT public a; b a; b_pkey postgres\n";
        assert!(list_has_triggers(list));
        assert_eq!(
            without_objects(list, &[(2620, 16420), (3466, 16430)]),
            ";\n; Archive created at 2026-01-01\n;\n\
            3362; 2620 16421 TRIGGER public x phony_track_y; Type: TRIGGER t_audit postgres\n\
            3364; 2606 16440 CONSTRAINT public a; b a; b_pkey postgres\n"
        );
        assert!(!list_has_triggers(
            "3364; 2606 16440 CONSTRAINT public a b postgres\n"
        ));
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
