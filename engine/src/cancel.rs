//! Stopping a lifecycle operation from outside: a handle any task can trigger.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// A cancellation handle: clones share one state; once [`cancel`](Self::cancel)led, it stays
/// so. An operation given one stops at its next safe point: a create before its record is
/// written (so it leaves no snapshot), a restore before it sends its commit (so its
/// transaction rolls back and the database is unchanged).
#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Cancel { tx: Arc::new(tx) }
    }

    /// Asks every operation holding this handle to stop.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once cancelled.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // The sender lives as long as any handle: an error means none is left to cancel.
            if rx.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Completes once `cancel` (if any) is cancelled; never without one.
pub(crate) async fn cancelled(cancel: Option<&Cancel>) {
    match cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_reaches_every_clone_and_stays() {
        let a = Cancel::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        let waiting = tokio::spawn(b.cancelled());
        a.cancel();
        assert!(b.is_cancelled());
        assert!(waiting.await.is_ok());
        // Waiting after the fact completes at once.
        b.cancelled().await;
    }
}
