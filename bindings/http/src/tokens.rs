//! API tokens: 256 random bits, shown once, stored as SHA-256; each scoped to one project
//! or an admin token. Managed with an admin token.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Row;

use crate::app::AppState;
use crate::auth::Caller;
use crate::body::Body;
use crate::problem::{ApiResult, Problem};
use crate::secrets::{new_id, new_token, token_hash};

/// A token as listed (never its secret).
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    /// None: an admin token.
    pub project_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenView {
    fn of(row: &Row) -> Self {
        TokenView {
            id: row.get("id"),
            project_id: row.get("project_id"),
            created_at: row.get("created_at"),
            revoked_at: row.get("revoked_at"),
        }
    }
}

/// A token just created: the one time its secret is shown.
#[derive(Debug, Serialize)]
pub struct NewTokenView {
    #[serde(flatten)]
    pub view: TokenView,
    pub token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub project_id: Option<String>,
}

/// Stores a new token's hash; returns its id.
pub async fn insert(
    client: &impl tokio_postgres::GenericClient,
    project_id: Option<&str>,
    secret: &str,
) -> Result<Row, tokio_postgres::Error> {
    client
        .query_one(
            "INSERT INTO tokens (id, project_id, hash) VALUES ($1, $2, $3) RETURNING *",
            &[&new_id("tok"), &project_id, &token_hash(secret)],
        )
        .await
}

/// `POST /api/v1/tokens` (admin): 201 with the token's `id` and, this once, `token`.
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Body(new): Body<NewToken>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if let Some(project) = &new.project_id {
        crate::projects::load(&app, &caller, project).await?;
    }
    let client = app.pool.get().await?;
    let secret = new_token();
    let row = insert(
        crate::snapshots::pg(&client),
        new.project_id.as_deref(),
        &secret,
    )
    .await?;
    let view = TokenView::of(&row);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/tokens/{}", view.id))],
        Json(NewTokenView {
            view,
            token: secret,
        }),
    )
        .into_response())
}

#[derive(Debug, Serialize)]
pub struct TokenList {
    pub items: Vec<TokenView>,
}

/// `GET /api/v1/tokens` (admin).
pub async fn list(State(app): State<AppState>, caller: Caller) -> ApiResult<Json<TokenList>> {
    caller.require_admin()?;
    let client = app.pool.get().await?;
    let rows = client
        .query("SELECT * FROM tokens ORDER BY created_at, id", &[])
        .await?;
    Ok(Json(TokenList {
        items: rows.iter().map(TokenView::of).collect(),
    }))
}

/// `DELETE /api/v1/tokens/{id}` (admin): revokes it; it answers 401 from then on (on
/// other servers sharing the metadata database, within `auth::TOKEN_FRESH`). The last
/// admin token is kept (409), so that the server stays manageable.
pub async fn revoke(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    // One revocation at a time, so two cannot each leave the other as the last admin.
    tx.execute("LOCK TABLE tokens IN SHARE ROW EXCLUSIVE MODE", &[])
        .await?;
    let row = tx
        .query_opt(
            "SELECT project_id FROM tokens WHERE id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Err(Problem::not_found("token"));
    };
    let project: Option<String> = row.get(0);
    if project.is_none() {
        let admins: i64 = tx
            .query_one(
                "SELECT count(*) FROM tokens WHERE project_id IS NULL AND revoked_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if admins <= 1 {
            return Err(Problem::conflict(
                "last_admin_token",
                "this is the last admin token: create another before revoking it",
            ));
        }
    }
    tx.execute("UPDATE tokens SET revoked_at = now() WHERE id = $1", &[&id])
        .await?;
    tx.commit().await?;
    // At once here; other servers within `auth::TOKEN_FRESH`.
    app.tokens.forget_token(&id);
    Ok(StatusCode::NO_CONTENT)
}
