//! A throwaway PostgreSQL cluster that a test may stop and start again: `initdb` + `pg_ctl`
//! from the installed binaries on a temporary directory and a free port, run as the
//! `postgres` user when the tests run as root. Stopped (immediately) when dropped.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Cluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
}

impl Cluster {
    /// A new cluster, started; `None` (after saying so) when there are no server binaries.
    pub fn start() -> Option<Self> {
        let bindir = bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("phony-meta-")
            .tempdir()
            .unwrap();
        let run_as = is_root().then(postgres_user);
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            dir,
            bindir,
            port,
            run_as,
        };
        cluster.run(
            "initdb",
            &["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"],
        );
        cluster.start_server();
        Some(cluster)
    }

    /// A URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let log = log.to_str().unwrap();
        self.run("pg_ctl", &["-w", "-o", &opts, "-l", log, "start"]);
    }

    /// Stops the server: `fast` ends every session (as a restart does), `immediate`
    /// also skips the checkpoint.
    pub fn stop_server(&self, mode: &str) {
        self.run("pg_ctl", &["-w", "-m", mode, "stop"]);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.arg("-D")
            .arg(&data)
            .args(args)
            .stdin(Stdio::null())
            .current_dir("/");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = Command::new(self.bindir.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `pg_ctl`.
fn bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .collect();
    found.sort();
    let found = found.pop().map(|(_, d)| d);
    if found.is_none() {
        eprintln!("skipped: no PostgreSQL server binaries under /usr/lib/postgresql");
    }
    found
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` user's uid and gid (PostgreSQL refuses to run as root).
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .expect("running as root, but there is no postgres user to run the cluster as")
}
