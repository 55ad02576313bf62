//! A throwaway PostgreSQL cluster: `initdb` + `pg_ctl` on a temporary directory and a free
//! port, stopped and removed on drop. Started as root, it runs the server as the `postgres`
//! user (PostgreSQL refuses to run as root).
//!
//! initdb is most of the start-up time (~1 s of ~1.2 s), so the first trust-only cluster
//! made by an installation leaves a pristine copy of its data directory in the temporary
//! directory (`phony-initdb-v1-<uid>-<binaries>`, mode 0700, used only if owned by the
//! server's user), and later ones copy it (~0.1 s) instead of running initdb.
//!
//! `pg_ctl` detaches the server from the process that starts it, so a process that dies
//! (or a static that is never dropped) would leave a postmaster running. Each cluster
//! therefore has a watchdog: a tiny shell in a process group of its own, reading a pipe
//! whose only writer is this process. When the process goes away, however it goes (normal
//! exit, panic, `SIGKILL`, Ctrl-C), the pipe closes and the watchdog stops the server and
//! deletes its directory.

use std::io;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// How to start a [`TempCluster`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Require this password over TCP (scram-sha-256) for the `postgres` user instead of
    /// trusting every connection.
    pub password: Option<String>,
    /// Server settings, as `-c name=value` (for example `max_locks_per_transaction`).
    pub settings: Vec<(String, String)>,
    /// Serve TLS (`ssl = on`) with this certificate and key (PEM).
    pub tls: Option<ServerTls>,
}

/// A server certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A running throwaway cluster. Dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct TempCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    password: Option<String>,
    tls: bool,
    settings: Vec<(String, String)>,
    watchdog: Option<Child>,
}

impl TempCluster {
    /// Starts a cluster that trusts every local connection.
    pub fn start() -> io::Result<Self> {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a cluster with `options`.
    pub fn start_with(options: ClusterOptions) -> io::Result<Self> {
        let bindir = find_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("phony-cluster-")
            .tempdir()?;
        let run_as = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--auth-local=trust",
        ]);
        match &options.password {
            Some(pw) => {
                let pwfile = dir.path().join("pwfile");
                std::fs::write(&pwfile, format!("{pw}\n"))?;
                if let Some((uid, gid)) = run_as {
                    std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
                }
                initdb
                    .arg("--auth-host=scram-sha-256")
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
            None => {
                initdb.arg("--auth-host=trust");
            }
        }
        // initdb is most of the start-up time: a trust-only cluster is copied from one
        // made earlier by the same binaries, when there is one.
        let cache = match options.password {
            None => initdb_cache(&bindir, run_as),
            Some(_) => None,
        };
        let copied = match &cache {
            Some(cache) if usable_cache(cache, run_as) => {
                copy_tree(cache, &data, run_as, "copying a cached cluster").is_ok()
            }
            _ => false,
        };
        if !copied {
            if data.exists() {
                std::fs::remove_dir_all(&data)?;
            }
            run(initdb, run_as, "initdb")?;
            if let Some(cache) = &cache {
                save_cache(&data, cache, run_as);
            }
        }
        if let Some(tls) = &options.tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", &tls.cert_pem), ("server.key", &tls.key_pem)] {
                let path = dir.path().join(name);
                std::fs::write(&path, pem)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                if let Some((uid, gid)) = run_as {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                }
            }
        }
        let port = free_port()?;
        let mut cluster = TempCluster {
            dir,
            bindir,
            port,
            run_as,
            password: options.password,
            tls: options.tls.is_some(),
            settings: options.settings,
            watchdog: None,
        };
        cluster.watchdog = Some(cluster.spawn_watchdog(&data)?);
        cluster.start_server(&data)?;
        Ok(cluster)
    }

    fn start_server(&mut self, data: &Path) -> io::Result<()> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        for (name, value) in &self.settings {
            opts += &format!(" -c {name}={value}");
        }
        if self.tls {
            let dir = self.dir.path().display();
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ));
        }
        let mut pg_ctl = Command::new(self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(data)
            .args(["-o", &opts, "-w", "-l"])
            .arg(self.dir.path().join("server.log"))
            .arg("start");
        run(pg_ctl, self.run_as, "pg_ctl start")
    }

    /// Starts the process that stops the server and removes its directory once this
    /// process's end of a pipe closes.
    fn spawn_watchdog(&self, data: &Path) -> io::Result<Child> {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(
                r#"cat >/dev/null; "$0" -D "$1" -m immediate -w stop >/dev/null 2>&1; rm -rf "$2""#,
            )
            .arg(self.bindir.join("pg_ctl"))
            .arg(data)
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Not in the terminal's process group: Ctrl-C must not kill the watchdog
            // before it has done its job.
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            sh.uid(uid).gid(gid);
        }
        sh.spawn()
    }

    /// The TCP port the server listens on (at 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as user `postgres` (with the password, if any).
    pub fn url(&self, database: &str) -> String {
        match &self.password {
            Some(pw) => format!(
                "postgres://postgres:{pw}@127.0.0.1:{}/{database}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
        }
    }

    /// The directory of the server's binaries.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let mut pg_ctl = Command::new(self.bindir.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = run(pg_ctl, self.run_as, "pg_ctl stop");
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing the pipe lets it finish: the server is already down, it removes the
            // directory (as does `TempDir`, whichever comes first).
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

fn run(mut cmd: Command, run_as: Option<(u32, u32)>, what: &str) -> io::Result<()> {
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    cmd.stdin(Stdio::null()).current_dir("/");
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output()?;
    if status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(if stderr.is_empty() { &stdout } else { &stderr }).into_owned();
    Err(io::Error::other(format!("{what} failed: {}", text.trim())))
}

/// Where a pristine trust-only cluster made by the binaries in `bindir` is kept: under the
/// temporary directory, named after the binaries, their date and the owner.
fn initdb_cache(bindir: &Path, run_as: Option<(u32, u32)>) -> Option<PathBuf> {
    let modified = std::fs::metadata(bindir.join("initdb"))
        .ok()?
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bindir.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let owner = run_as.map_or_else(current_uid, |(uid, _)| uid);
    Some(std::env::temp_dir().join(format!("phony-initdb-v1-{owner}-{hash:016x}-{modified}")))
}

/// A cache is used only if it is complete and private to the user that runs the server
/// (nobody else could have planted it).
fn usable_cache(cache: &Path, run_as: Option<(u32, u32)>) -> bool {
    let owner = run_as.map_or_else(current_uid, |(uid, _)| uid);
    match std::fs::symlink_metadata(cache) {
        Ok(m) => {
            m.is_dir()
                && m.uid() == owner
                && m.mode() & 0o077 == 0
                && cache.join("PG_VERSION").is_file()
        }
        Err(_) => false,
    }
}

/// Keeps a copy of a fresh data directory for the next cluster; best effort, and atomic
/// (a copy under another name, then renamed), so a concurrent start never sees half of it.
fn save_cache(data: &Path, cache: &Path, run_as: Option<(u32, u32)>) {
    let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
    if copy_tree(data, &tmp, run_as, "caching the cluster").is_err()
        || std::fs::rename(&tmp, cache).is_err()
    {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// `cp -a`: ownership and modes preserved, as PostgreSQL requires of a data directory.
fn copy_tree(from: &Path, to: &Path, run_as: Option<(u32, u32)>, what: &str) -> io::Result<()> {
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(from).arg(to);
    run(cp, run_as, what)
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn postgres_user() -> io::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "postgres")
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .ok_or_else(|| {
            io::Error::other(
                "running as root, but there is no `postgres` user to run the server as",
            )
        })
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The newest installed server binaries: `$PHONY_PG_BINDIR`, `pg_config --bindir`, or
/// `/usr/lib/postgresql/<newest>/bin`.
fn find_bindir() -> io::Result<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("PHONY_PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has_server(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&d) {
            return Ok(d);
        }
    }
    Err(io::Error::other(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: install the server package or set PHONY_PG_BINDIR",
    ))
}
