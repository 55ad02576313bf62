//! The OpenAPI document: committed, complete, consistent, and every route in it served.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;

use super::support::start;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

/// The committed `openapi.json` is the generated document (CI fails when a route or schema
/// changes without it). `PHONY_UPDATE_OPENAPI=1` rewrites it.
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let generated =
        serde_json::to_string_pretty(&phony_server::openapi::document()).unwrap() + "\n";
    let path = committed_path();
    if std::env::var_os("PHONY_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is stale: run PHONY_UPDATE_OPENAPI=1 cargo test -p phony-server --test integration openapi"
    );
}

/// Every route the product publishes is in the document.
#[test]
fn every_published_route_is_documented() {
    let doc = phony_server::openapi::document();
    let expected = [
        ("post", "/api/v1/projects/{id}/snapshots"),
        ("get", "/api/v1/projects/{id}/snapshots"),
        ("post", "/api/v1/snapshots/{id}/restore"),
        ("get", "/api/v1/snapshots/{id}/diff/{other_id}"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/projects"),
        ("get", "/api/v1/projects/{id}"),
        ("patch", "/api/v1/projects/{id}"),
        ("delete", "/api/v1/projects/{id}"),
        ("get", "/api/v1/snapshots/{id}"),
        ("patch", "/api/v1/snapshots/{id}"),
        ("delete", "/api/v1/snapshots/{id}"),
        ("get", "/api/v1/projects/{id}/usage"),
        ("post", "/api/v1/snapshots/{id}/export"),
        ("get", "/api/v1/jobs/{id}"),
        ("get", "/api/v1/projects/{id}/jobs"),
        ("post", "/api/v1/jobs/{id}/cancel"),
        ("post", "/api/v1/tokens"),
        ("get", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/docs"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    for (method, path) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{} {path} is missing from the OpenAPI document",
            method.to_uppercase()
        );
    }
}

/// Structure: OpenAPI 3.1, unique operation ids, every `$ref` resolves, every path
/// parameter declared, every operation answers something.
#[test]
fn the_document_is_valid() {
    let doc = phony_server::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in &refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd $ref {r}"));
        assert!(schemas.contains_key(name), "$ref {r} does not resolve");
    }
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(["get", "post", "patch", "delete", "put"].contains(&method.as_str()));
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "duplicate operationId"
            );
            assert!(!op["responses"].as_object().unwrap().is_empty());
            let declared: HashSet<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for seg in path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(declared.contains(name), "{path}: {name} not declared");
                }
            }
        }
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Every documented route is served: without a token, an authenticated route answers 401
/// (never the router's 404 or 405), an open one 200.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_served() {
    let h = start().await;
    let served = h
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(served.ok(200), &phony_server::openapi::document());
    for (path, item) in served.body["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "x_000000000000")
            .replace("{other_id}", "live");
        for (method, op) in item.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = h.call(m, &concrete, None, None).await;
            let secured = !op["security"].as_array().unwrap().is_empty();
            if secured {
                a.problem(401, "unauthorized");
            } else {
                assert_eq!(a.status, 200, "{method} {path}: {}", a.text);
            }
        }
    }
}
