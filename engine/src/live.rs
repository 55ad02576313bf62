//! Reading the live database into the store for a comparison, without a snapshot record.

use phony_core::RootManifest;
use phony_postgres::{CaptureOptions, ConnectionTarget};

use crate::lease::{LockHolder, Notify};
use crate::{Engine, Error, Result};

/// The live database's state, captured into the store but listed nowhere. Its blobs (and
/// every other blob) are kept from garbage collection until [`release`](Self::release): a
/// collection started meanwhile waits for it or postpones its sweep, so a diff reading them
/// never finds one deleted under it.
#[derive(Debug)]
pub struct LiveCapture {
    pub manifest: RootManifest,
    lock: LockHolder,
}

impl LiveCapture {
    /// Fails if the protection may have lapsed (the lock could not be kept fresh).
    pub fn check(&self) -> Result<()> {
        Ok(self.lock.check()?)
    }

    /// Ends the protection: call once done reading the capture's blobs.
    pub async fn release(self) {
        self.lock.release().await;
    }
}

impl Engine {
    /// Captures `target` under a create lock, which the returned [`LiveCapture`] holds.
    pub async fn capture_live(
        &self,
        target: &ConnectionTarget,
        opts: &CaptureOptions,
        notify: &Notify,
    ) -> Result<LiveCapture> {
        let lock = LockHolder::acquire_create(self.store(), notify).await?;
        let captured = phony_postgres::capture(target, self.store(), opts)
            .await
            .map_err(|source| Error::Reading {
                target: target.to_string(),
                source,
            })?;
        Ok(LiveCapture {
            manifest: captured.manifest,
            lock,
        })
    }
}
