//! How a failed command ends: one line on stderr (with `--json`, one JSON document on one
//! line), and its exit code.
//!
//! With `--json`, an error is `{"error": {"code": "...", "message": "..."}}`. The codes are
//! stable, for scripts to branch on:
//!
//! | code | meaning |
//! |---|---|
//! | `not_found` | no snapshot (or store object) by that id, prefix or name |
//! | `ambiguous` | an id prefix matches several snapshots |
//! | `name_taken` | another snapshot already has that name |
//! | `exists` | an export's file or object exists already (`--force` replaces it) |
//! | `usage` | the command line or a value in it is not valid (exit 2) |
//! | `confirmation_required` | the command needs `--yes` when not run on a terminal (exit 2) |
//! | `other_database` | a restore in place of a snapshot taken of another database |
//! | `locked` | other sessions hold locks the restore needs |
//! | `corrupt_store` | a stored object or record is damaged or missing |
//! | `unsupported_format` | the store was written by a newer phony |
//! | `storage_full` | the store's disk or quota is full |
//! | `storage` | the store could not be read or written |
//! | `connection` | the database could not be reached, or refused the login |
//! | `database` | a statement failed on the database |
//! | `pg_dump` | pg_dump is missing or failed |
//! | `unsupported` | the request cannot be done (e.g. a diff that SQL cannot express) |
//! | `cancelled` | interrupted (Ctrl-C, exit 130) or not confirmed (exit 1); nothing changed |
//! | `internal` | anything else |
//!
//! `phony run` passes its command's exit status on, and exits 127 (`not_found`) when the
//! command does not exist.

use std::fmt;
use std::process::ExitCode;

use serde::Serialize;

use crate::stdout::StdoutClosed;

/// A usage error found after the command line was parsed: exit 2.
#[derive(Debug)]
pub struct Usage {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Usage {}

/// A failure with a code of its own, where no typed error says it: exit 1.
#[derive(Debug)]
pub struct Coded {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// The command was stopped before it changed anything: interrupted (exit 130) or not
/// confirmed (exit 1).
#[derive(Debug)]
pub struct Cancelled {
    pub message: &'static str,
    pub exit: u8,
}

impl Cancelled {
    /// Ctrl-C.
    pub const INTERRUPTED: Cancelled = Cancelled {
        message: "interrupted, nothing changed",
        exit: 130,
    };
    /// Ctrl-C once the restore's commit was sent: it ran to its end.
    pub const AFTER_COMMIT: Cancelled = Cancelled {
        message: "interrupted while committing: the restore ran to its end and is committed",
        exit: 130,
    };
    /// A question answered no.
    pub const DECLINED: Cancelled = Cancelled {
        message: "not confirmed, nothing changed",
        exit: 1,
    };
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for Cancelled {}

/// The stable code of an error: that of the first cause phony knows.
pub fn code(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(u) = cause.downcast_ref::<Usage>() {
            return u.code;
        }
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if cause.is::<Cancelled>() {
            return "cancelled";
        }
        if cause.is::<crate::run::CommandNotFound>() {
            return "not_found";
        }
        if let Some(e) = cause.downcast_ref::<phony_core::Error>() {
            return core_code(e);
        }
        if let Some(e) = boxed::<phony_engine::Error>(cause) {
            use phony_engine::Error as E;
            return match e {
                E::NoStore { .. } => "not_found",
                E::NotAStore { .. } | E::ForeignObjects { .. } => "usage",
                E::Cancelled => "cancelled",
                E::Capture { source: e, .. } | E::Reading { source: e, .. } => postgres_code(e),
                E::Restore { source: e, .. }
                | E::Tracking { source: e, .. }
                | E::Exporting { source: e, .. } => postgres_code(e),
                E::Store(e)
                | E::Storage { source: e, .. }
                | E::Rewriting { source: e, .. }
                | E::ReadingSnapshot { source: e, .. } => core_code(e),
                E::Postgres(e) => postgres_code(e),
                E::OtherDatabase { .. } => "other_database",
                E::ExportExists { .. } => "exists",
                // The cause says more: the next link of the chain.
                E::SafetySnapshot { .. } | E::Retention { .. } | E::Deleting { .. } => continue,
                other => kind_code(&other.kind()),
            };
        }
        if let Some(e) = boxed::<phony_postgres::Error>(cause) {
            return postgres_code(e);
        }
    }
    "internal"
}

/// The code of an engine error this module has no finer answer for, by its kind.
fn kind_code(kind: &phony_engine::ErrorKind) -> &'static str {
    use phony_engine::ErrorKind as K;
    match kind {
        K::NotFound => "not_found",
        K::AmbiguousId => "ambiguous",
        K::NameTaken => "name_taken",
        K::Locked { .. } => "locked",
        K::CorruptStore => "corrupt_store",
        K::NewerFormat => "unsupported_format",
        K::StorageFull => "storage_full",
        K::Cancelled => "cancelled",
        K::Connection => "connection",
        K::Database { .. } => "database",
        K::SchemaUnsupported => "unsupported",
        K::OtherDatabase => "other_database",
        K::ConfirmationRequired => "confirmation_required",
        K::Invalid => "usage",
        _ => "internal",
    }
}

fn postgres_code(e: &phony_postgres::Error) -> &'static str {
    use phony_postgres::Error as P;
    match e {
        P::Connect { .. } => "connection",
        P::Postgres { .. } => "database",
        P::Locked { .. } => "locked",
        P::PgDump(_) => "pg_dump",
        P::InvalidTarget(_) => "usage",
        P::Patch(_) => "unsupported",
        P::Mask(_) => "usage",
        P::Store(e) => core_code(e),
        P::Internal(_) => "internal",
        #[allow(unreachable_patterns)]
        _ => "internal",
    }
}

fn core_code(e: &phony_core::Error) -> &'static str {
    use phony_core::Error as C;
    match e {
        C::NotFound { .. } | C::SnapshotNotFound { .. } | C::PrefixTooShort { .. } => "not_found",
        C::AlreadyExists { .. } => "name_taken",
        C::Ambiguous { .. } => "ambiguous",
        C::Invalid(_) => "usage",
        C::Corrupt { .. } | C::BaseMissing { .. } | C::CorruptRecord { .. } => "corrupt_store",
        C::UnsupportedFormat { .. } => "unsupported_format",
        C::Backend { .. } if e.is_storage_full() => "storage_full",
        C::Backend { .. } => "storage",
        #[allow(unreachable_patterns)]
        _ => "internal",
    }
}

/// Ends a failed command: prints the error and gives the exit code.
pub fn finish(e: &anyhow::Error, json: bool) -> ExitCode {
    if e.chain().any(|c| c.is::<StdoutClosed>()) {
        return ExitCode::SUCCESS;
    }
    // A command wrapped by `phony run`: its own status, passed on as it is.
    if let Some(crate::run::ExitWith(code)) = e.chain().find_map(|c| c.downcast_ref()) {
        return ExitCode::from(*code);
    }
    let cancelled = e.chain().find_map(|c| {
        c.downcast_ref::<Cancelled>().or_else(|| {
            matches!(
                c.downcast_ref::<phony_engine::Error>(),
                Some(phony_engine::Error::Cancelled)
            )
            .then_some(&Cancelled::INTERRUPTED)
        })
    });
    let exit = if let Some(c) = cancelled {
        c.exit
    } else if e.chain().any(|c| c.is::<crate::run::CommandNotFound>()) {
        127
    } else if e.chain().any(|c| c.is::<Usage>() || is_malformed_target(c)) {
        2
    } else {
        1
    };
    // Interrupted: the one line says so, without the step it stopped.
    let message = match cancelled {
        Some(c) => c.message.to_owned(),
        None => match hint(e) {
            Some(hint) => format!("{}; {hint}", one_line(e)),
            None => one_line(e),
        },
    };
    print(code(e), &message, json);
    ExitCode::from(exit)
}

/// What the command line adds to a library error: the flag or command that would change
/// the outcome (library messages name none).
fn hint(e: &anyhow::Error) -> Option<String> {
    use phony_engine::Error as E;
    use phony_postgres::Error as P;
    e.chain().find_map(|c| {
        if let Some(e) = boxed::<E>(c) {
            return match e {
                E::OtherDatabase { database, .. } => Some(format!(
                    "pass --allow-other-database to replace {database} anyway"
                )),
                E::SafetySnapshot { .. } => Some("skip it with --no-safety-snapshot".to_owned()),
                E::ForeignObjects { .. } => {
                    Some("point --store at an empty prefix or an existing store".to_owned())
                }
                E::Pinned { .. } => Some("unpin it or pass --force to delete it anyway".to_owned()),
                E::DamagedRecord { .. } => Some("pass --force to delete it".to_owned()),
                E::ExportExists { .. } => Some("pass --force to replace it".to_owned()),
                E::NoPolicy => Some(
                    "pass --keep-last N and/or --expire-after DURATION, or give the store one with `phony store config --keep-last N --expire-after DURATION`"
                        .to_owned(),
                ),
                E::NotAStore { .. } => Some("point --store at a new or empty directory".to_owned()),
                _ => None,
            };
        }
        if let Some(e) = boxed::<P>(c) {
            return match e {
                P::Locked { .. } => Some(
                    "retry later, raise --lock-timeout, or use --force to terminate them"
                        .to_owned(),
                ),
                P::LargeObjects { .. } => {
                    Some("pass --skip-large-objects to snapshot without them".to_owned())
                }
                _ => None,
            };
        }
        match c.downcast_ref::<phony_core::Error>() {
            Some(phony_core::Error::Invalid(m)) if m.contains("is not a phony store") => {
                Some("point --store at a new or empty directory".to_owned())
            }
            _ => None,
        }
    })
}

/// `cause` as a `T`, also when a library keeps it boxed.
fn boxed<'a, T: std::error::Error + 'static>(
    cause: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    cause
        .downcast_ref::<T>()
        .or_else(|| cause.downcast_ref::<Box<T>>().map(|b| &**b))
}

/// A malformed connection string is a usage error, like a malformed flag.
fn is_malformed_target(cause: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        cause.downcast_ref::<phony_postgres::Error>(),
        Some(phony_postgres::Error::InvalidTarget(_))
    )
}

/// Prints one error line on stderr: text, or with `json` a one-line JSON document.
pub fn print(code: &str, message: &str, json: bool) {
    if json {
        #[derive(Serialize)]
        struct Doc<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        let doc = Doc {
            error: Inner { code, message },
        };
        if let Ok(line) = serde_json::to_string(&doc) {
            eprintln!("{line}");
            return;
        }
    }
    eprintln!("phony: error: {message}");
}

/// The error and its causes on one line, without repeating a cause its context already quotes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_the_first_known_cause() {
        let e = anyhow::Error::new(phony_core::Error::SnapshotNotFound {
            reference: "x".into(),
        })
        .context("showing x");
        assert_eq!(code(&e), "not_found");
        let e = anyhow::Error::new(phony_postgres::Error::Store(phony_core::Error::Ambiguous {
            prefix: "abcd".into(),
            candidates: vec![],
        }));
        assert_eq!(code(&e), "ambiguous");
        let e = anyhow::Error::new(phony_postgres::Error::Connect {
            target: "db".into(),
            message: "refused".into(),
            code: None,
        })
        .context("capturing db");
        assert_eq!(code(&e), "connection");
        assert_eq!(code(&anyhow::anyhow!("something")), "internal");
        assert_eq!(
            code(&anyhow::Error::new(Usage {
                code: "usage",
                message: "no".into()
            })),
            "usage"
        );
    }

    #[test]
    fn hints_name_the_flags_the_library_does_not() {
        let locked = phony_postgres::Error::Locked {
            database: "app".into(),
            timeout: "5s".into(),
            sessions: vec![],
        };
        assert!(!locked.to_string().contains("--"), "{locked}");
        let e = anyhow::Error::new(phony_engine::Error::Restore {
            id: phony_core::SnapshotId::from_random([1; 6]),
            database: "app".into(),
            kept: None,
            source: Box::new(locked),
        });
        assert_eq!(code(&e), "locked");
        assert!(hint(&e).is_some_and(|h| h.contains("--lock-timeout")));
        let e = anyhow::Error::new(phony_engine::Error::OtherDatabase {
            snapshot: "s".into(),
            database: "app".into(),
            why: "it was taken of database other, not app".into(),
        });
        assert!(hint(&e).is_some_and(|h| h.contains("--allow-other-database")));
        assert_eq!(hint(&anyhow::anyhow!("plain")), None);
    }
}
