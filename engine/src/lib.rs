//! phony's snapshot lifecycle, as one library API callable from any tokio program.
//!
//! The command line, the test kit and the REST service all reach a store through
//! [`Engine`]: it opens a store from its URL; creates snapshots ([`Engine::create`]: lock,
//! capture, a name that stays unique under concurrency ([`names`]), record written last,
//! retention after); lists, shows, deletes, pins and prunes them ([`Engine::prune`]);
//! restores them ([`Engine::restore`], with the safety snapshot that undoes it); syncs a
//! database from another ([`Engine::sync`], masked, with snapshots either side); diffs them
//! ([`Engine::diff`]); exports them as SQL to a file, S3 or a writer ([`Engine::export`]);
//! verifies and measures the store; and turns change tracking on and off
//! ([`tracking`]). Long operations take [`RunOptions`]: a [`ProgressSink`], a [`Cancel`] and
//! a notice callback. Errors say their [`ErrorKind`]. The report types whose JSON every
//! binding returns are in [`report`].
//!
//! ```no_run
//! use phony_engine::{Engine, RestoreRequest, RunOptions};
//! use phony_postgres::ConnectionTarget;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::open(".phony").await?;
//! let database = ConnectionTarget::parse(Some("postgres://postgres@127.0.0.1/app"))?;
//! let restored = engine
//!     .restore(&database, RestoreRequest::of("clean-state"), RunOptions::default())
//!     .await?;
//! println!("undo with {:?}", restored.safety.map(|s| s.id));
//! # Ok(())
//! # }
//! ```
//!
//! It sits between the adapters (`phony-postgres`, `phony-object-store`) and the
//! bindings; `phony-core` stays free of I/O.

mod cancel;
mod copy;
pub mod create;
mod delete;
mod diff;
mod error;
pub mod export;
pub mod gc;
pub mod lease;
pub mod list;
mod live;
mod maintenance;
pub mod names;
mod open;
mod pin;
mod progress;
pub mod report;
mod restore;
pub mod retention;
mod safety;
pub mod sync;
pub mod tracking;

pub use cancel::Cancel;
pub use create::{Create, CreateOptions, CreatePhase, Created, TOOL_VERSION};
pub use delete::Removed;
pub use diff::{DiffOptions, DiffTo};
pub use error::{Error, ErrorKind, Result};
pub use export::{Compression, ExportFormat, ExportOptions, ExportTarget, Exported};
pub use list::ListFilter;
pub use live::LiveCapture;
pub use maintenance::Verified;
pub use open::{Engine, EngineStore};
pub use pin::Pinned;
pub use progress::{Part, ProgressSink, RunOptions, Step};
pub use restore::{RestoreRequest, Restored};
pub use retention::{AutoPruned, PruneGc, PruneRequest, Pruned};
pub use sync::{SyncRequest, Synced};
