//! Stores in an S3 bucket (or any S3-compatible server), through object_store's
//! `AmazonS3`.
//!
//! Credentials, region and endpoint come from the standard variables only
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`), never from the store location, so a location can be printed and
//! stored. An `http://` endpoint is allowed, for local S3-compatible servers.
//!
//! Every operation the store needs maps onto one S3 request: create-if-absent writes are
//! `PUT` with `If-None-Match: *` (a 412 answer means another writer won, which for
//! content-addressed data is success), listings are `ListObjectsV2` (strongly consistent
//! since 2020) and an object's `Last-Modified` is the server's clock, which is what lock
//! leases measure against (see docs/design.md, "Garbage collection").

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use phony_core::{Error, Result};

/// How long one request may keep retrying before it fails: long enough to ride out a
/// server restart, short enough that an unreachable endpoint fails in seconds, not minutes.
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the client for `s3://bucket/prefix`. Makes no request.
pub(crate) fn build(bucket: &str, prefix: &str) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 4,
            retry_timeout: RETRY_TIMEOUT,
        });
    if endpoint().is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    if std::env::var_os("AWS_REGION").is_none() {
        if let Ok(region) = std::env::var("AWS_DEFAULT_REGION") {
            builder = builder.with_region(region);
        }
    }
    let s3 = builder.build().map_err(|e| {
        Error::backend(
            format!("configuring S3 for s3://{bucket}"),
            OneLine::of(&e.to_string()),
        )
    })?;
    if prefix.is_empty() {
        Ok(Arc::new(s3))
    } else {
        Ok(Arc::new(PrefixStore::new(s3, Path::from(prefix))))
    }
}

/// The endpoint the variables name, if any.
fn endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// An endpoint for messages: any `user:password@` in it left out.
fn shown(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let host = match rest[..authority_end].rsplit_once('@') {
                Some((_, host)) => host,
                None => &rest[..authority_end],
            };
            format!("{scheme}://{host}{}", &rest[authority_end..])
        }
        None => endpoint
            .rsplit_once('@')
            .map_or(endpoint, |(_, h)| h)
            .to_owned(),
    }
}

/// Checks that the bucket exists and answers, so that a missing bucket or refused
/// credentials are said as such rather than as "no store here".
pub(crate) async fn probe(store: &dyn ObjectStore, bucket: &str, location: &str) -> Result<()> {
    match store.list_with_delimiter(None).await {
        Ok(_) => Ok(()),
        Err(e) => Err(explain(location.to_owned(), bucket, &e)),
    }
}

/// An S3 failure as one line that says what to do, without the response body (which can
/// be long XML) and without any secret (object_store never puts one in its errors; the
/// request URL holds none either).
pub(crate) fn explain(context: String, bucket: &str, e: &object_store::Error) -> Error {
    let text = e.to_string();
    let has = |needle: &str| text.contains(needle);
    let hint = if has("NoSuchBucket") {
        format!("the bucket {bucket:?} does not exist (create it first, or fix the name)")
    } else if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("AccessDenied")
        || has("403 Forbidden")
        || has("ExpiredToken")
    {
        "access denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, and the bucket's policy".to_owned()
    } else if has("error sending request")
        || has("Connect")
        || has("connection")
        || has("dns error")
    {
        format!(
            "cannot reach the S3 endpoint {} (check AWS_ENDPOINT_URL and the network)",
            endpoint().map_or_else(|| "of AWS".into(), |e| shown(&e))
        )
    } else {
        return Error::backend(context, OneLine::of(&text));
    };
    Error::backend(context, OneLine(hint))
}

/// A message made to fit on one line and kept short.
#[derive(Debug)]
pub(crate) struct OneLine(String);

impl OneLine {
    pub(crate) fn of(text: &str) -> Self {
        let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.len() > 300 {
            let mut end = 300;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        OneLine(line)
    }
}

impl std::fmt::Display for OneLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OneLine {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_shown_without_credentials() {
        assert_eq!(shown("http://127.0.0.1:5055"), "http://127.0.0.1:5055");
        assert_eq!(
            shown("https://key:secret@s3.example.com/x"),
            "https://s3.example.com/x"
        );
        assert_eq!(shown("key:secret@host"), "host");
    }

    #[test]
    fn long_multi_line_messages_become_one_short_line() {
        let text = format!("first\n  second\t{}", "x".repeat(1000));
        let line = OneLine::of(&text).to_string();
        assert!(line.starts_with("first second x"));
        assert_eq!(line.lines().count(), 1);
        assert!(line.len() <= 304);
    }
}
