//! Writing a database: the restore (its plan, then the delta or the full path), the
//! per-table rewrite of the rows that differ, a restore into a new database, and the SQL
//! a snapshot or a diff becomes (export, patch).

pub mod export;
pub mod fresh;
pub mod patch;
pub mod restore;
pub(crate) mod rewrite;
