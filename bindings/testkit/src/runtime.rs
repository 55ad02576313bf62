//! The kit's own runtime. Every test under `#[tokio::test]` has a runtime of its own that
//! ends with the test; the connections, locks and resets a kit keeps between tests live on
//! this one instead, which lives as long as the process.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

use crate::error::{Error, Result};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

pub(crate) fn handle() -> Result<&'static tokio::runtime::Handle> {
    let rt = RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("phony-testkit")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => Ok(rt.handle()),
        Err(e) => Err(Error::Internal(format!("starting its runtime: {e}"))),
    }
}

/// Runs `fut` on the kit's runtime and waits for it from any runtime (or none).
pub(crate) async fn run<F, T>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    handle()?
        .spawn(fut)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// Runs `fut` on the kit's runtime and blocks this thread until it is done. For `Drop`,
/// where nothing can be awaited; the caller's runtime (if any) is not needed meanwhile.
pub(crate) fn block<F, T>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    handle()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::Internal("a reset task was lost".into()))?
}
