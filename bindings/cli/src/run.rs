//! `phony run -- CMD ARGS…`: a snapshot before a job (a sync tool, a migration, a test
//! suite), the job, a snapshot after it, and the job's own exit status.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use phony_core::{Origin, SnapshotName};
use time::OffsetDateTime;

use crate::context::Context;
use crate::snapshot::take_snapshot;
use phony_engine::Create;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Take the snapshot before the command (with neither flag: before and after)
    #[arg(long)]
    pub before: bool,
    /// Take the snapshot after the command (with neither flag: before and after)
    #[arg(long)]
    pub after: bool,
    /// Name the snapshots from a template: {when} (before, after), {date} (YYYY-MM-DD),
    /// {time} (HHMMSS), {sync} (the run's number); "-{when}" is added when both are taken
    /// and the template has no {when}
    #[arg(long, value_name = "TEMPLATE")]
    pub name: Option<String>,
    /// The command to run, and its arguments (after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// The command's exit status, passed on by `main` without a message of phony's own.
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the command exited with status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// The command to run does not exist: exit 127, as a shell would.
#[derive(Debug)]
pub struct CommandNotFound(pub String);

impl std::fmt::Display for CommandNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command not found: {}", self.0)
    }
}

impl std::error::Error for CommandNotFound {}

pub async fn run(ctx: &Context, args: RunArgs) -> Result<()> {
    let (program, rest) = match args.command.split_first() {
        Some(split) => split,
        None => anyhow::bail!("name a command to run after --"),
    };
    // A command that cannot be found is reported before anything is snapshotted.
    let Some(path) = find_program(program) else {
        return Err(CommandNotFound(program.to_string_lossy().into_owned()).into());
    };
    let (before, after) = match (args.before, args.after) {
        (false, false) => (true, true),
        flags => flags,
    };
    let target = ctx.target()?;
    let store = ctx.open_or_create_store().await?;
    let number = crate::sync::next_sync_number(&crate::context::records(&store).await?);
    let command_name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let labels: BTreeMap<String, String> = [
        ("sync".to_owned(), number.to_string()),
        ("command".to_owned(), command_name),
    ]
    .into();
    let name_for = |when: &str| -> Result<Option<SnapshotName>> {
        let Some(template) = &args.name else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        let mut name = template.clone();
        if before && after && !name.contains("{when}") {
            name.push_str("-{when}");
        }
        let name = name
            .replace("{when}", when)
            .replace("{sync}", &number.to_string())
            .replace(
                "{date}",
                &format!(
                    "{:04}-{:02}-{:02}",
                    now.year(),
                    u8::from(now.month()),
                    now.day()
                ),
            )
            .replace(
                "{time}",
                &format!("{:02}{:02}{:02}", now.hour(), now.minute(), now.second()),
            );
        Ok(Some(
            name.parse().context("naming the snapshot from --name")?,
        ))
    };

    if before {
        let record = take_snapshot(
            ctx,
            &store,
            &target,
            Create {
                name: name_for("before")?,
                pin: false,
                origin: Origin::SyncBefore,
                labels: labels.clone(),
                skip_large_objects: false,
            },
        )
        .await
        .context("taking the snapshot before the command")?
        .record;
        eprintln!("phony: before: {}", record.id);
    }

    let mut child = tokio::process::Command::new(&path)
        .args(rest)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    // Ctrl-C reaches the command too (same process group): phony waits for it to end and
    // still takes the snapshot after it.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.with_context(|| format!("waiting for {}", path.display()))?,
            _ = tokio::signal::ctrl_c() => continue,
        }
    };
    let code = exit_code(&status);

    if after {
        let mut labels = labels;
        labels.insert("exit_status".to_owned(), code.to_string());
        let record = take_snapshot(
            ctx,
            &store,
            &target,
            Create {
                name: name_for("after")?,
                pin: false,
                origin: Origin::SyncAfter,
                labels,
                skip_large_objects: false,
            },
        )
        .await
        .context("the command ended, but taking the snapshot after it failed")?
        .record;
        eprintln!(
            "phony: after: {} (the command exited with {code})",
            record.id
        );
    }
    if code == 0 {
        Ok(())
    } else {
        Err(ExitWith(code).into())
    }
}

/// The status a shell would report: the exit code, or 128 + the signal that ended it.
fn exit_code(status: &std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        (None, None) => 1,
    }
}

/// `program` as a path to an executable file: itself when it names a path, else found on
/// `PATH`.
fn find_program(program: &OsString) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let as_path = Path::new(program);
    if as_path.components().count() > 1 || program.to_string_lossy().contains('/') {
        return executable(as_path).then(|| as_path.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}
