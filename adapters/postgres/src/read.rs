//! Reading a database: its catalog, its schema through pg_dump, its rows as chunk streams,
//! and the capture that puts all of it into a store (whole, or only what changed).
//!
//! Nothing here writes to the database it reads, except the marks change tracking keeps
//! (see [`crate::tracking`]).

pub mod capture;
pub mod catalog;
pub(crate) mod chunk_stream;
pub(crate) mod incremental;
pub mod schema_dump;
pub(crate) mod xmin;
