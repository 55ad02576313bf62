//! The local-directory backend: one file per object, `key` as its path below the store
//! directory.
//!
//! Operations run inline on the calling task. A snapshot writes thousands of small
//! objects, each a handful of system calls that the page cache answers in microseconds;
//! handing each call to a blocking thread cost more than the call itself (an incremental
//! snapshot spent most of its time waking threads).
//!
//! Writes are atomic: the bytes go to a temporary file in the object's directory (a name
//! starting with `.`, which listings skip), which is then renamed into place: replacing
//! for [`Backend::put`], refusing to replace for [`Backend::put_if_absent`]
//! (`renameat2(RENAME_NOREPLACE)` on Linux, a hard link elsewhere). An empty object needs
//! no temporary file: creating it exclusively is already atomic. A killed writer leaves at
//! most a temporary file, never a partial object. Names with `#` are the temporary files
//! of the object_store crate's backend, which earlier versions used: they are skipped too.
//!
//! Nothing below the store directory is followed through a symbolic link: every directory
//! on the way to a key must be a real directory, and an object a regular file (opened with
//! `O_NOFOLLOW`); anything else is [`Error::BadObject`]. A read is bounded by the caller's
//! limit, checked against the file's size before anything is read, so a sparse file or a
//! link to `/dev/zero` costs no memory. Listings skip whatever is not a regular file or a
//! directory.
//!
//! Writes are not synced one by one: a snapshot writes thousands of objects, and a
//! `fsync` each would cost a journal commit each. [`LocalDir::sync`] makes everything
//! written so far durable in one call (`syncfs` of the store's file system on Linux, a
//! global `sync` on other Unixes), which the store calls around each snapshot record.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use phony_core::{Error, ListEntry, Result};
use time::OffsetDateTime;

/// A store directory.
#[derive(Debug)]
pub(crate) struct LocalDir {
    root: PathBuf,
    description: String,
    /// Makes temporary names unique within this process (the pid, across processes).
    counter: AtomicU64,
    pid: u32,
}

impl LocalDir {
    pub(crate) fn new(root: PathBuf, description: String) -> Self {
        LocalDir {
            root,
            description,
            counter: AtomicU64::new(0),
            pid: std::process::id(),
        }
    }

    /// The path of `key`, refusing keys that could leave the directory or name a
    /// temporary file.
    fn path(&self, key: &str) -> Result<PathBuf> {
        let valid = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty() && !part.starts_with('.') && !part.contains(['#', '\\', '\0'])
            });
        if !valid {
            return Err(Error::Invalid(format!(
                "invalid object key {key:?} in {}",
                self.description
            )));
        }
        Ok(self.root.join(key))
    }

    /// The path of `key`, after checking that every directory on the way that exists is a
    /// real directory (not a symbolic link, which could lead out of the store).
    fn checked_path(&self, key: &str) -> Result<PathBuf> {
        let path = self.path(key)?;
        let dirs = key.rsplit_once('/').map_or("", |(dirs, _)| dirs);
        self.check_dirs(dirs)?;
        Ok(path)
    }

    /// Checks that each existing directory of the `/`-separated `dirs` below the root is a
    /// real directory.
    fn check_dirs(&self, dirs: &str) -> Result<()> {
        let mut at = self.root.clone();
        let mut key = String::new();
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            at.push(part);
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => return Err(self.bad_object(&key, &m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(self.error("checking", &key, e)),
            }
        }
        Ok(())
    }

    /// The error for `key`, found to be something else than phony writes there.
    fn bad_object(&self, key: &str, meta: &fs::Metadata) -> Error {
        let kind = meta.file_type();
        let reason = if kind.is_symlink() {
            "it is a symbolic link, which phony never writes in a store (and does not follow)"
        } else if kind.is_dir() {
            "it is a directory where phony keeps a file"
        } else if kind.is_file() {
            "it is a file where phony keeps a directory"
        } else {
            "it is not a regular file (a device, a pipe or a socket)"
        };
        Error::BadObject {
            what: format!("{key} in {}", self.description),
            reason: reason.into(),
        }
    }

    fn error(&self, what: &str, key: &str, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound {
                what: format!("{key} in {}", self.description),
            }
        } else {
            Error::backend(format!("{what} {key} in {}", self.description), e)
        }
    }

    pub(crate) fn put_if_absent(&self, key: &str, bytes: &Bytes) -> Result<bool> {
        let path = self.checked_path(key)?;
        let result = if bytes.is_empty() {
            with_parent(&path, || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map(drop)
            })
        } else {
            self.write_then(&path, bytes, |tmp| rename_no_replace(tmp, &path))
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.error("writing", key, e)),
        }
    }

    pub(crate) fn put(&self, key: &str, bytes: &Bytes) -> Result<()> {
        let path = self.checked_path(key)?;
        self.write_then(&path, bytes, |tmp| fs::rename(tmp, &path))
            .map_err(|e| self.error("writing", key, e))
    }

    /// Writes `bytes` to a new temporary file beside `path`, then calls `place` with the
    /// temporary path; the temporary file is removed whatever `place` did with it.
    fn write_then(
        &self,
        path: &Path,
        bytes: &[u8],
        place: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = path.with_file_name(format!(
            ".{name}.{}.{}.tmp",
            self.pid,
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = with_parent(path, || {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(bytes)
        })
        .and_then(|()| place(&tmp));
        // After a rename there is nothing left to remove; after a failure, the partial file.
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Reads the regular file at `key`, of at most `max_len` bytes (see the module docs).
    pub(crate) fn get(&self, key: &str, max_len: u64) -> Result<Bytes> {
        let path = self.checked_path(key)?;
        let mut file = open_no_follow(&path).map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => Error::BadObject {
                what: format!("{key} in {}", self.description),
                reason: "it is a symbolic link, which phony never writes in a store (and does not follow)".into(),
            },
            _ => self.error("reading", key, e),
        })?;
        let meta = file.metadata().map_err(|e| self.error("reading", key, e))?;
        if !meta.is_file() {
            return Err(self.bad_object(key, &meta));
        }
        let what = || format!("{key} in {}", self.description);
        if meta.len() > max_len {
            return Err(Error::too_large(what(), meta.len(), max_len));
        }
        // The size may change under us: never read more than the limit allows.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        (&mut file)
            .take(max_len.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| self.error("reading", key, e))?;
        if bytes.len() as u64 > max_len {
            return Err(Error::too_large(what(), bytes.len() as u64, max_len));
        }
        Ok(Bytes::from(bytes))
    }

    pub(crate) fn head(&self, key: &str) -> Result<Option<u64>> {
        let path = self.checked_path(key)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(m) => Err(self.bad_object(key, &m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    /// Removes the file at `key`; a symbolic link there is removed itself, never its target.
    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        let path = self.checked_path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("deleting", key, e)),
        }
    }

    /// Makes every completed write durable (see the module docs).
    pub(crate) fn sync(&self) -> Result<()> {
        sync_file_system(&self.root)
            .map_err(|e| Error::backend(format!("syncing {} to disk", self.description), e))
    }

    /// Every object below the directory `prefix` names (a trailing `/` is optional).
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let prefix = prefix.trim_end_matches('/');
        let mut out = Vec::new();
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            let path = self.path(prefix)?;
            self.check_dirs(prefix)?;
            path
        };
        let mut dirs = vec![(start, prefix.to_owned())];
        while let Some((dir, key)) = dirs.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // A missing directory holds nothing (as an object store prefix would).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.error("listing", &format!("{key}/"), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.error("listing", &format!("{key}/"), e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('.') || name.contains('#') {
                    continue;
                }
                let child = match key.is_empty() {
                    true => name,
                    false => format!("{key}/{name}"),
                };
                // A file removed since the directory was read is simply not listed.
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.error("listing", &child, e)),
                };
                if meta.is_dir() {
                    dirs.push((entry.path(), child));
                } else if meta.is_file() {
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .and_then(|d| {
                            OffsetDateTime::from_unix_timestamp_nanos(d.as_nanos() as i128).ok()
                        })
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                    out.push(ListEntry {
                        key: child,
                        size: meta.len(),
                        modified,
                        // A file has no version tag: the record index is not used here.
                        version: None,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Opens `path` for reading without following a symbolic link in its last component (then
/// `ELOOP`), and without blocking on a pipe.
fn open_no_follow(path: &Path) -> io::Result<fs::File> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(fs::File::from(openat(CWD, path, flags, Mode::empty())?))
}

/// Runs `op`; when it fails because the parent directory is missing, creates it and runs
/// `op` once more.
fn with_parent(path: &Path, mut op: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            op()
        }
        other => other,
    }
}

/// Flushes the file system holding `dir`: its data and metadata, new names included.
#[cfg(target_os = "linux")]
fn sync_file_system(dir: &Path) -> io::Result<()> {
    let root = fs::File::open(dir)?;
    rustix::fs::syncfs(&root)?;
    Ok(())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn sync_file_system(dir: &Path) -> io::Result<()> {
    fs::metadata(dir)?;
    rustix::fs::sync();
    Ok(())
}

#[cfg(not(unix))]
compile_error!("the local store syncs through Unix system calls");

/// Moves `from` to `to` unless `to` exists (then `AlreadyExists`), atomically.
#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without RENAME_NOREPLACE.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP) => {
            link_no_replace(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    link_no_replace(from, to)
}

/// A hard link fails when `to` exists; `from` is removed either way.
fn link_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let linked = fs::hard_link(from, to);
    let _ = fs::remove_file(from);
    linked
}
