//! phony's snapshot lifecycle, as one library API callable from any tokio program.
//!
//! The command line, the test kit and the coming REST service all reach a store through
//! [`Engine`]: it opens a store from its URL, lists and shows snapshots, claims names so
//! that two creates racing for one name have exactly one winner ([`names`]), and builds
//! the report types whose JSON every binding returns ([`report`]).
//!
//! It sits between the adapters (`phony-postgres`, `phony-object-store`) and the
//! bindings; `phony-core` stays free of I/O.

mod cancel;
pub mod create;
mod diff;
mod error;
pub mod gc;
pub mod lease;
pub mod list;
mod live;
pub mod names;
mod open;
mod pin;
mod progress;
pub mod report;
mod restore;
pub mod retention;
mod safety;

pub use cancel::Cancel;
pub use create::{Create, CreateOptions, CreatePhase, Created, TOOL_VERSION};
pub use diff::{DiffOptions, DiffTo};
pub use error::{Error, ErrorKind, Result};
pub use list::ListFilter;
pub use live::LiveCapture;
pub use open::{Engine, EngineStore};
pub use pin::Pinned;
pub use progress::{Part, ProgressSink, RunOptions, Step};
pub use restore::{RestoreRequest, Restored};
pub use retention::AutoPruned;
