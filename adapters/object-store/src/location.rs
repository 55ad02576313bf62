//! Where a store lives, as people write it: a directory path, `file:///path`,
//! `s3://bucket/prefix` or `memory://`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use phony_core::Error;

/// A parsed store location. Its [`Display`](fmt::Display) is the canonical spelling and
/// never holds a secret (credentials come from the environment, never from the location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory.
    Dir(PathBuf),
    /// An S3 bucket, and the key prefix inside it the store uses (no leading or trailing
    /// `/`; empty for the bucket's root).
    S3 { bucket: String, prefix: String },
    /// Memory, gone when the process ends (for tests).
    Memory,
}

impl StoreLocation {
    /// Whether this location names an S3 bucket.
    pub fn is_s3(&self) -> bool {
        matches!(self, StoreLocation::S3 { .. })
    }
}

impl FromStr for StoreLocation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(Error::Invalid(
                "the store location is empty: give a directory, file:///path or s3://bucket/prefix"
                    .into(),
            ));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(StoreLocation::Dir(PathBuf::from(s)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                if rest.is_empty() {
                    return Err(Error::Invalid(format!("{s:?} names no directory")));
                }
                Ok(StoreLocation::Dir(PathBuf::from(rest)))
            }
            "memory" if rest.is_empty() => Ok(StoreLocation::Memory),
            "memory" => Err(Error::Invalid(format!(
                "{s:?}: a memory store has no path, write memory://"
            ))),
            "s3" => parse_s3(rest),
            _ => Err(Error::Invalid(format!(
                "unsupported store location scheme {scheme:?}: use a directory path, file://, s3:// or memory://"
            ))),
        }
    }
}

fn parse_s3(rest: &str) -> Result<StoreLocation, Error> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.contains('@') || bucket.contains(':') {
        // Never echo it: it may hold a secret.
        return Err(Error::Invalid(
            "an s3:// store location holds no credentials or port: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL instead".into(),
        ));
    }
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(Error::Invalid(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '-' and '.'): write s3://BUCKET/PREFIX"
        )));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|part| part == "." || part == ".." || (part.is_empty() && !prefix.is_empty()))
    {
        return Err(Error::Invalid(format!(
            "s3://{bucket}/{prefix}: the prefix must not hold empty, '.' or '..' parts"
        )));
    }
    Ok(StoreLocation::S3 {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Dir(path) => write!(f, "{}", path.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreLocation::Memory => f.write_str("memory://"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> StoreLocation {
        s.parse().unwrap()
    }

    #[test]
    fn paths_file_urls_s3_and_memory_parse() {
        assert_eq!(parse(".phony"), StoreLocation::Dir(".phony".into()));
        assert_eq!(parse("/tmp/s"), StoreLocation::Dir("/tmp/s".into()));
        assert_eq!(parse("file:///tmp/s"), StoreLocation::Dir("/tmp/s".into()));
        assert_eq!(parse("memory://"), StoreLocation::Memory);
        assert_eq!(
            parse("s3://my-bucket/team/db/"),
            StoreLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/db".into()
            }
        );
        assert_eq!(parse("s3://my-bucket").to_string(), "s3://my-bucket");
        assert_eq!(
            parse("s3://my-bucket/a/b").to_string(),
            "s3://my-bucket/a/b"
        );
        assert!(parse("S3://my-bucket/a").is_s3());
    }

    #[test]
    fn bad_locations_are_one_clear_line_and_never_echo_credentials() {
        for (input, expected) in [
            ("gs://bucket/x", "unsupported store location scheme \"gs\""),
            ("s3://", "is not an S3 bucket name"),
            ("s3://ab/x", "is not an S3 bucket name"),
            ("s3://My_Bucket/x", "is not an S3 bucket name"),
            ("s3://b-1/a//b", "must not hold empty"),
            ("s3://b-1/a/../b", "must not hold empty"),
            ("memory://x", "a memory store has no path"),
            ("", "empty"),
        ] {
            let err = input.parse::<StoreLocation>().unwrap_err().to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert_eq!(err.lines().count(), 1);
        }
        let err = "s3://AKIA:hunter2@bucket/x"
            .parse::<StoreLocation>()
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter2") && err.contains("AWS_SECRET_ACCESS_KEY"),
            "{err}"
        );
    }
}
