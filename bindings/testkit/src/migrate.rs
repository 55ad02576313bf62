//! Building a baseline database from SQL: one file, or a directory of migrations applied
//! in order.

use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// The migrations in `dir`, in the order they apply: `*.sql` files (not `*.down.sql`),
/// sorted by their leading number (`0001_init.sql`, `20240102_users.up.sql`, sqlx's and
/// refinery's conventions), then by name.
pub fn migration_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_file() && name.ends_with(".sql") && !name.ends_with(".down.sql") {
            files.push(path);
        }
    }
    files.sort_by_key(|p| order_key(p));
    Ok(files)
}

fn order_key(path: &Path) -> (u128, String) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let digits: String = name
        .trim_start_matches(['V', 'v'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (digits.parse().unwrap_or(u128::MAX), name)
}

/// Runs each file in its own implicit transaction; the first failure names the file and
/// the server's message, and stops.
pub async fn apply(client: &Client, files: &[PathBuf]) -> Result<()> {
    for file in files {
        let sql = std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::Migration {
                file: file.clone(),
                message: phony_postgres::error::describe(&e),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_in_numeric_order_without_down_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "10_later.sql",
            "2_second.sql",
            "1_first.sql",
            "2_second.down.sql",
            "README.md",
            "V3__flyway.sql",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("nested.sql")).unwrap();
        let names: Vec<String> = migration_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "1_first.sql",
                "2_second.sql",
                "V3__flyway.sql",
                "10_later.sql"
            ]
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = migration_files(Path::new("/nonexistent/migrations")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/migrations"), "{err}");
    }
}
