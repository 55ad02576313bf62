//! Restoring a snapshot into a database: in place, or into another database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use phony_core::RootManifest;
use phony_postgres::{ConnectionTarget, RestoreOptions, RestoreReport};

use crate::cancel::{cancelled, Cancel};
use crate::{Engine, Error, Result};

impl Engine {
    /// Restores `root` into the existing database `target`, in one transaction, without a
    /// safety snapshot. A `cancel` before the commit is sent drops the restore: its
    /// connection closes, the transaction rolls back and the database is unchanged
    /// ([`Error::Cancelled`]); once the commit is sent, the restore runs to its end.
    pub async fn restore_into(
        &self,
        target: &ConnectionTarget,
        root: &RootManifest,
        opts: RestoreOptions,
        cancel: Option<&Cancel>,
    ) -> Result<RestoreReport> {
        let committing = opts
            .committing
            .clone()
            .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
        let opts = RestoreOptions {
            committing: Some(Arc::clone(&committing)),
            ..opts
        };
        let work = phony_postgres::restore(target, self.store(), root, &opts);
        tokio::pin!(work);
        let done = tokio::select! {
            biased;
            () = cancelled(cancel) => {
                if !committing.load(Ordering::SeqCst) {
                    return Err(Error::Cancelled);
                }
                // Sent: whether it commits is the server's to say.
                work.await
            }
            done = &mut work => done,
        };
        Ok(done?)
    }
}
