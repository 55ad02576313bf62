//! Holding a lock of the garbage-collection protocol (see `phony_core::gc`): write it,
//! keep it fresh in the background, check it is still held, and remove it when done (also
//! when the holder is dropped on an error path).
//!
//! A process killed while holding a lock (Ctrl-C, `kill -9`) cannot remove it. Others
//! remove it once its lease expires, or at once when its body shows a process of this
//! host, boot and pid namespace whose pid is not running any more (see
//! [`Lock::holder_is_gone`]): saying so through the caller's [`Notify`] either way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use phony_core::gc::{self, Lock, LockKind, LockScan};
use phony_core::Backend;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{EngineStore as AppStore, Error, Result};

/// Where a lock holder tells people what it did to others' locks (one line each, such as
/// "removed a stale lock of pid 42 (no longer running)").
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// How often a create waiting for a garbage collection looks again.
const WAIT_POLL: Duration = Duration::from_millis(200);

/// A lock this process holds.
#[derive(Debug)]
pub struct LockHolder {
    store: Arc<AppStore>,
    notify: NotifyDebug,
    lock: Lock,
    ttl: Duration,
    /// When the last successful write of the lock started.
    refreshed: Arc<Mutex<Instant>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    released: bool,
}

/// [`Notify`], shown as a name in a holder's `Debug`.
#[derive(Clone)]
struct NotifyDebug(Notify);

impl std::fmt::Debug for NotifyDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

fn storage(doing: &'static str) -> impl FnOnce(phony_core::Error) -> Error {
    move |source| Error::Storage { doing, source }
}

fn new_lock(kind: LockKind) -> Lock {
    let token: [u8; 8] = rand::random();
    Lock {
        kind,
        token: token.iter().map(|b| format!("{b:02x}")).collect(),
        pid: std::process::id(),
        host: hostname(),
        started_at: OffsetDateTime::now_utc(),
        scope: process_scope(),
    }
}

/// This process's boot and pid namespace (see [`Lock::scope`]), where the system says.
fn process_scope() -> Option<String> {
    static SCOPE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SCOPE
        .get_or_init(|| {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
            let scope = format!("{}/{}", boot.trim(), ns.to_str()?);
            (scope.len() <= 255).then_some(scope)
        })
        .clone()
}

/// Whether a process with this pid exists (in this pid namespace). When unsure: yes.
fn running(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().chars().take(255).collect())
        .filter(|h: &String| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Writes (or refreshes) `lock`. The protocol reads only a lock's key and the time it was
/// written; its body tells people who holds it. On a full disk the lock is written empty,
/// which needs a name but no data: so a garbage collection can still run, and free space,
/// when a snapshot has just failed for lack of it.
async fn write(store: &AppStore, lock: &Lock) -> phony_core::Result<()> {
    let backend = store.backend();
    match backend.put(&lock.key(), Bytes::from(lock.encode())).await {
        Err(e) if e.is_storage_full() => backend.put(&lock.key(), Bytes::new()).await,
        other => other,
    }
}

/// Lists the locks and sorts them as the holder of `own_key` sees them; removes stale ones,
/// whose lease expired or whose holder is known to have died (best effort, saying so).
async fn scan(store: &AppStore, own_key: &str, ttl: Duration, notify: &Notify) -> Result<LockScan> {
    let entries = store
        .backend()
        .list(gc::LOCKS_PREFIX)
        .await
        .map_err(storage("listing the store's locks"))?;
    let mut scan = gc::scan_locks(&entries, own_key, ttl)?;
    for key in &scan.stale {
        let holder = read_lock(store, key).await;
        if let Err(e) = store.backend().delete(key).await {
            tracing::debug!("could not remove the stale lock {key}: {e}");
            continue;
        }
        let who = holder.map_or_else(|| key.clone(), |l| l.holder());
        notify(&format!(
            "removed a stale lock of {who} (its lease expired)"
        ));
    }
    let (host, scope) = (hostname(), process_scope());
    for list in [&mut scan.creates, &mut scan.gcs] {
        let mut kept = Vec::with_capacity(list.len());
        for key in list.drain(..) {
            let dead = match read_lock(store, &key).await {
                Some(lock) if lock.holder_is_gone(&host, scope.as_deref(), running) => lock,
                _ => {
                    kept.push(key);
                    continue;
                }
            };
            match store.backend().delete(&key).await {
                Ok(()) => notify(&format!(
                    "removed a stale lock of pid {} (no longer running)",
                    dead.pid
                )),
                Err(e) => {
                    tracing::debug!("could not remove the lock {key} of a dead process: {e}");
                    kept.push(key);
                }
            }
        }
        *list = kept;
    }
    Ok(scan)
}

/// The body of the lock at `key`, if it can be read (an empty or damaged one cannot).
async fn read_lock(store: &AppStore, key: &str) -> Option<Lock> {
    let bytes = store.backend().get(key, gc::MAX_LOCK_LEN).await.ok()?;
    Lock::decode(key, &bytes).ok()
}

impl LockHolder {
    /// Takes a create lock: after this, no garbage collection deletes a blob this process
    /// relies on until the lock is released. Waits while a garbage collection is sweeping.
    pub async fn acquire_create(store: &Arc<AppStore>, notify: &Notify) -> Result<Self> {
        let ttl = store.config().gc.lease_ttl();
        let lock = new_lock(LockKind::Create);
        loop {
            let started = Instant::now();
            write(store, &lock)
                .await
                .map_err(storage("writing the snapshot's lock"))?;
            let scan = scan(store, &lock.key(), ttl, notify).await?;
            if scan.gcs.is_empty() {
                return Ok(Self::start(store.clone(), lock, ttl, started, notify));
            }
            // A collector is (or may be) deleting: step back so that it is not kept
            // waiting for us, and come back when it is done.
            tracing::info!(
                "waiting for a garbage collection to finish ({:?})",
                scan.gcs
            );
            store.backend().delete(&lock.key()).await?;
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Takes a gc lock (the caller then waits for create locks to go, see [`Self::scan`]).
    pub async fn acquire_gc(store: &Arc<AppStore>, notify: &Notify) -> Result<Self> {
        let ttl = store.config().gc.lease_ttl();
        let lock = new_lock(LockKind::Gc);
        let started = Instant::now();
        write(store, &lock)
            .await
            .map_err(storage("writing the garbage collection's lock"))?;
        Ok(Self::start(store.clone(), lock, ttl, started, notify))
    }

    fn start(
        store: Arc<AppStore>,
        lock: Lock,
        ttl: Duration,
        started: Instant,
        notify: &Notify,
    ) -> Self {
        let refreshed = Arc::new(Mutex::new(started));
        let (stop, mut stopped) = oneshot::channel();
        let task = {
            let (store, lock, refreshed) = (store.clone(), lock.clone(), refreshed.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(ttl / 4) => {}
                    }
                    let at = Instant::now();
                    match write(&store, &lock).await {
                        Ok(()) => *refreshed.lock().unwrap_or_else(|p| p.into_inner()) = at,
                        Err(e) => tracing::warn!("could not refresh the lock {}: {e}", lock.key()),
                    }
                }
            })
        };
        LockHolder {
            store,
            notify: NotifyDebug(notify.clone()),
            lock,
            ttl,
            refreshed,
            stop: Some(stop),
            task: Some(task),
            released: false,
        }
    }

    /// The other locks, as this holder sees them.
    pub async fn scan(&self) -> Result<LockScan> {
        scan(&self.store, &self.lock.key(), self.ttl, &self.notify.0).await
    }

    /// Fails if the lock may have gone stale in others' eyes (it could not be refreshed
    /// for half its period): then the protection it gives is not certain any more.
    pub fn check(&self) -> phony_core::Result<()> {
        check(&self.refreshed, self.ttl)
    }

    /// A check callable without borrowing the holder.
    pub fn checker(&self) -> impl FnMut() -> phony_core::Result<()> + Send + 'static {
        let (refreshed, ttl) = (self.refreshed.clone(), self.ttl);
        move || check(&refreshed, ttl)
    }

    /// Stops refreshing the lock and removes it.
    pub async fn release(mut self) {
        self.release_inner().await;
    }

    async fn release_inner(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Err(e) = self.store.backend().delete(&self.lock.key()).await {
            tracing::warn!("could not remove the lock {}: {e}", self.lock.key());
        }
    }
}

fn check(refreshed: &Mutex<Instant>, ttl: Duration) -> phony_core::Result<()> {
    let since = refreshed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .elapsed();
    if since >= ttl / 2 {
        return Err(phony_core::Error::Invalid(format!(
            "this process's lock in the store could not be refreshed for {}s (the store's lease period is {}s); stopping rather than risk a concurrent garbage collection",
            since.as_secs(),
            ttl.as_secs()
        )));
    }
    Ok(())
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // On an error path: remove the lock now rather than leave it to go stale.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            tokio::task::block_in_place(|| handle.block_on(self.release_inner()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_lock_not_refreshed_for_half_its_period_is_no_longer_trusted() {
        let ttl = Duration::from_secs(4);
        let fresh = Mutex::new(Instant::now());
        assert!(check(&fresh, ttl).is_ok());
        if let Some(then) = Instant::now().checked_sub(Duration::from_secs(2)) {
            let lapsed = Mutex::new(then);
            let err = check(&lapsed, ttl).unwrap_err();
            assert!(err.to_string().contains("could not be refreshed"), "{err}");
        }
    }

    #[test]
    fn this_process_is_running_and_a_reaped_child_is_not() {
        assert!(running(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!running(pid));
        assert!(running(u32::MAX), "not a pid: assumed running");
        let lock = new_lock(LockKind::Gc);
        assert!(
            lock.scope.is_some(),
            "Linux gives a boot id and a pid namespace"
        );
        assert!(!lock.holder_is_gone(&hostname(), process_scope().as_deref(), running));
    }

    #[test]
    fn new_locks_have_valid_tokens() {
        let lock = new_lock(LockKind::Create);
        assert!(lock.key().starts_with("locks/create-"));
        assert_eq!(Lock::decode("l", &lock.encode()).ok(), Some(lock));
    }
}
