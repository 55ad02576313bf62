//! `Authorization: Bearer <token>`: who is asking, and what they may see.
//!
//! A token found in the metadata database is trusted for [`TOKEN_FRESH`] without asking
//! again ([`TokenCache`]), so that a burst of requests does not make one query each. A
//! revocation through this server's API drops the entry at once; one through another
//! server (or a deleted project there) takes effect here within [`TOKEN_FRESH`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::problem::{ApiResult, Problem};
use crate::secrets::{same_hash, token_hash};

/// What a token may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// One project; anything else answers 404.
    Project(String),
}

/// The token a request came with, checked.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub token_id: String,
    pub scope: Scope,
}

impl Caller {
    pub fn require_admin(&self) -> ApiResult<()> {
        match self.scope {
            Scope::Admin => Ok(()),
            Scope::Project(_) => Err(Problem::admin_required()),
        }
    }

    /// Whether the caller may see project `id` (others answer 404, as if absent).
    pub fn sees(&self, project_id: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Project(p) => p == project_id,
        }
    }
}

/// How long a checked token is trusted without asking the metadata database again.
pub const TOKEN_FRESH: Duration = Duration::from_secs(5);

/// Past this many entries, expired ones are dropped when a token is added.
const TOKEN_CACHE_PURGE: usize = 4096;

/// Tokens checked lately, by their hash (never the secret itself).
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<Vec<u8>, (Instant, Caller)>>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (Instant, Caller)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller a token of this hash was found to be, if that was less than
    /// [`TOKEN_FRESH`] ago.
    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let entries = self.lock();
        let (at, caller) = entries.get(hash)?;
        (at.elapsed() < TOKEN_FRESH).then(|| caller.clone())
    }

    fn put(&self, hash: Vec<u8>, caller: Caller) {
        let mut entries = self.lock();
        if entries.len() >= TOKEN_CACHE_PURGE {
            entries.retain(|_, (at, _)| at.elapsed() < TOKEN_FRESH);
        }
        entries.insert(hash, (Instant::now(), caller));
    }

    /// Forgets token `id` (revoked).
    pub fn forget_token(&self, id: &str) {
        self.lock().retain(|_, (_, c)| c.token_id != id);
    }

    /// Forgets every token of project `id` (deleted).
    pub fn forget_project(&self, id: &str) {
        self.lock()
            .retain(|_, (_, c)| c.scope != Scope::Project(id.to_owned()));
    }
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Self> {
        let Some(token) = bearer(parts) else {
            return Err(Problem::unauthorized(
                "send an API token as `Authorization: Bearer <token>`",
            ));
        };
        let hash = token_hash(token);
        if let Some(caller) = app.tokens.get(&hash) {
            return Ok(caller);
        }
        let client = app.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, project_id, hash FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash],
            )
            .await?;
        let Some(row) = row else {
            return Err(Problem::unauthorized(
                "the token is not valid (or was revoked)",
            ));
        };
        let stored: Vec<u8> = row.get(2);
        if !same_hash(&stored, &hash) {
            return Err(Problem::unauthorized(
                "the token is not valid (or was revoked)",
            ));
        }
        let project: Option<String> = row.get(1);
        let caller = Caller {
            token_id: row.get(0),
            scope: project.map_or(Scope::Admin, Scope::Project),
        };
        app.tokens.put(hash, caller.clone());
        Ok(caller)
    }
}
