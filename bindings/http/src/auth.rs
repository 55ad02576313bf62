//! `Authorization: Bearer <token>`: who is asking, and what they may see.

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
    /// The token's id (for logs).
    #[allow(dead_code)]
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
        Ok(Caller {
            token_id: row.get(0),
            scope: project.map_or(Scope::Admin, Scope::Project),
        })
    }
}
