//! `/projects/{id}/diff?from=&to=`: two markers (or one and `now`) compared: schema changes
//! as coloured DDL diffs, per-table counts, and each table's rows on demand, a page at a
//! time (`/projects/{id}/diff/rows`). The document is the API's (`src/diff.rs`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use crate::app::AppState;
use crate::diff::DiffQuery;
use crate::problem::Problem;
use crate::web::pages;
use crate::web::{enc, layout, page, Fail, Session, WebResult};

/// Rows shown per page.
const PER_PAGE: usize = 50;
/// The deepest page (the engine collects every row up to it).
const MAX_PAGE: usize = 200;

#[derive(Debug, Deserialize)]
pub struct Pick {
    from: Option<String>,
    to: Option<String>,
    table: Option<String>,
    page: Option<usize>,
}

/// The diff document, with rows up to `rows` per table.
async fn document(
    app: &AppState,
    session: &Session,
    from: &str,
    to: &str,
    rows: usize,
) -> Result<Value, Problem> {
    let other = if to == "now" { "live" } else { to };
    let axum::Json(doc) = crate::diff::diff(
        State(app.clone()),
        session.caller.clone(),
        Path((from.to_owned(), other.to_owned())),
        crate::body::Query(DiffQuery {
            rows: Some((rows > 0).to_string()),
            limit: Some(rows),
        }),
    )
    .await?;
    Ok(doc)
}

fn side(doc: &Value, key: &str) -> String {
    let s = &doc[key];
    match (s["id"].as_str(), s["name"].as_str(), s["database"].as_str()) {
        (Some(id), Some(name), _) => format!("{name} ({id})"),
        (Some(id), None, _) => id.to_owned(),
        (None, _, Some(db)) => format!("{db} now"),
        _ => "?".to_owned(),
    }
}

/// A unified DDL diff, line by line: `+` added, `-` removed.
fn ddl(diff: &str) -> Markup {
    html! {
        pre.ddl { code {
            @for line in diff.lines() {
                @let class = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => "add",
                    Some('-') if !line.starts_with("---") => "del",
                    Some('@') => "hunk",
                    _ => "ctx",
                };
                span class=(class) { (line) } "\n"
            }
        } }
    }
}

/// `GET /projects/{id}/diff`.
pub async fn show(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(pick): Query<Pick>,
) -> WebResult {
    let project = pages::project(&app, &session, &id).await?;
    let (Some(from), to) = (
        pick.from.clone(),
        pick.to.clone().unwrap_or_else(|| "now".into()),
    ) else {
        let body = html! {
            (pages::header(&project, "diff"))
            section.card {
                h2 { "Compare" }
                p { "Pick two markers on the " a href=(format!("/projects/{}#timeline", project.id)) { "timeline" }
                    " (the Compare form below it), or a marker's " em { "Compare with now" } "." }
            }
        };
        return Ok(page(
            StatusCode::OK,
            layout("Compare", Some(&session), body),
        ));
    };
    let doc = match document(&app, &session, &from, &to, 0).await {
        Ok(doc) => doc,
        Err(p) if p.code == "plan_required" => {
            let body = html! {
                (pages::header(&project, "diff"))
                section.card.disabled data-plan-required {
                    h2 { "Compare" }
                    p { (p.detail) }
                }
            };
            return Ok(page(
                StatusCode::FORBIDDEN,
                layout("Compare", Some(&session), body),
            ));
        }
        Err(p) => return Err(Fail::from(p)),
    };
    let schema = doc["schema"].as_array().cloned().unwrap_or_default();
    let tables: Vec<Value> = doc["tables"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["change"] != "unchanged")
        .collect();
    let sequences = doc["sequences"].as_array().map_or(0, Vec::len);
    let body = html! {
        (pages::header(&project, "diff"))
        section.card data-diff {
            h2 { "From " (side(&doc, "from")) " to " (side(&doc, "to")) }
            @if doc["identical"] == true {
                p data-identical { "No differences: both sides hold the same schema and rows." }
            }
            h3 { "Schema" }
            @if schema.is_empty() {
                p { "The schema is the same." }
            }
            @for s in &schema {
                details.schema-change open {
                    summary { span class=(format!("badge change-{}", s["change"].as_str().unwrap_or_default())) { (s["change"].as_str().unwrap_or_default()) }
                        " " (s["kind"].as_str().unwrap_or_default()) " "
                        @if let Some(sc) = s["schema"].as_str() { (sc) "." } (s["name"].as_str().unwrap_or_default()) }
                    (ddl(s["diff"].as_str().unwrap_or_default()))
                }
            }
            h3 { "Tables" }
            @if tables.is_empty() {
                p { "No table's rows differ." }
            } @else {
                div.table-wrap {
                    table.diff-tables {
                        thead { tr {
                            th scope="col" { "Table" } th scope="col" { "Change" }
                            th scope="col" { "Added" } th scope="col" { "Removed" } th scope="col" { "Changed" }
                            th scope="col" { span.sr-only { "Rows" } }
                        } }
                        tbody {
                            @for t in &tables {
                                @let name = format!("{}.{}", t["schema"].as_str().unwrap_or_default(), t["name"].as_str().unwrap_or_default());
                                @let count = t["rows_added"].as_u64().unwrap_or(0) + t["rows_removed"].as_u64().unwrap_or(0) + t["rows_changed"].as_u64().unwrap_or(0);
                                tr data-table=(name) {
                                    th scope="row" { (name) }
                                    td { (t["change"].as_str().unwrap_or_default()) }
                                    td.add { (t["rows_added"].as_u64().unwrap_or(0)) }
                                    td.del { (t["rows_removed"].as_u64().unwrap_or(0)) }
                                    td.chg { (t["rows_changed"].as_u64().unwrap_or(0)) }
                                    td { @if count > 0 {
                                        a href=(format!("/projects/{}/diff/rows?from={}&to={}&table={}&page=1", project.id, enc(&from), enc(&to), enc(&name))) { "Rows" }
                                    } }
                                }
                            }
                        }
                    }
                }
            }
            @if sequences > 0 { p { (sequences) " sequence(s) moved." } }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout("Compare", Some(&session), body),
    ))
}

fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".to_owned(),
        other => other.to_string(),
    }
}

/// `GET /projects/{id}/diff/rows?from=&to=&table=&page=`.
pub async fn rows(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(pick): Query<Pick>,
) -> WebResult {
    let project = pages::project(&app, &session, &id).await?;
    let (Some(from), Some(table)) = (pick.from.clone(), pick.table.clone()) else {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            "name the two sides and a table",
        ));
    };
    let to = pick.to.clone().unwrap_or_else(|| "now".into());
    let n = pick.page.unwrap_or(1).clamp(1, MAX_PAGE);
    let doc = document(&app, &session, &from, &to, n * PER_PAGE).await?;
    let Some(t) = doc["tables"]
        .as_array()
        .and_then(|ts| {
            ts.iter().find(|t| {
                format!(
                    "{}.{}",
                    t["schema"].as_str().unwrap_or_default(),
                    t["name"].as_str().unwrap_or_default()
                ) == table
            })
        })
        .cloned()
    else {
        return Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("no table {table} in this comparison"),
        ));
    };
    let all = t["rows"].as_array().cloned().unwrap_or_default();
    let shown: Vec<&Value> = all.iter().skip((n - 1) * PER_PAGE).take(PER_PAGE).collect();
    let more = t["rows_truncated"] == true || all.len() > n * PER_PAGE;
    let columns: Vec<String> = t["columns"]
        .as_array()
        .map(|c| c.iter().map(value).collect())
        .unwrap_or_default();
    let (f, t2, tb) = (enc(&from), enc(&to), enc(&table));
    let link = |p: usize| {
        format!(
            "/projects/{}/diff/rows?from={f}&to={t2}&table={tb}&page={p}",
            project.id
        )
    };
    let body = html! {
        (pages::header(&project, "diff"))
        section.card data-rows {
            h2 { "Rows of " (table) }
            p.muted { "From " (side(&doc, "from")) " to " (side(&doc, "to")) " · page " (n) }
            div.table-wrap {
                table.rows {
                    thead { tr {
                        th scope="col" { "Change" }
                        th scope="col" { "Key" }
                        @for c in &columns { th scope="col" { (c) } }
                    } }
                    tbody {
                        @for r in &shown {
                            @let change = r["change"].as_str().unwrap_or_default();
                            tr class=(format!("row-{change}")) {
                                td { (change) }
                                td { (r["key"].as_array().map(|k| k.iter().map(value).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                                @if change == "changed" {
                                    @for c in &columns {
                                        @let hit = r["changes"].as_array().and_then(|cs| cs.iter().find(|x| x["column"].as_str() == Some(c.as_str())));
                                        td { @match hit {
                                            Some(x) => { del { (value(&x["old"])) } " → " ins { (value(&x["new"])) } }
                                            None => span.muted { "=" },
                                        } }
                                    }
                                } @else {
                                    @for v in r["values"].as_array().cloned().unwrap_or_default() {
                                        td { (value(&v)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if n > 1 { a href=(link(n - 1)) rel="prev" { "← Previous" } }
                @if more && n < MAX_PAGE { a href=(link(n + 1)) rel="next" { "Next →" } }
                a href=(format!("/projects/{}/diff?from={f}&to={t2}", project.id)) { "Back to the comparison" }
            }
        }
    };
    Ok(page(StatusCode::OK, layout("Rows", Some(&session), body)))
}
