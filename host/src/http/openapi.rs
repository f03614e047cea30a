//! The OpenAPI document, `/api/v1/openapi.json`: the API's contract.
//!
//! Routes and operations come from the same utoipa annotations
//! (`api::api_routes`), so an operation cannot be served undocumented or
//! documented unserved. What every operation shares is added here by rule
//! rather than repeated on each handler, from what the middleware and the
//! extractors really do:
//!
//! - every error is `application/problem+json` ([`ApiError`]'s rendering);
//! - an operation with parameters or a body can answer 400 (its extractor's
//!   rejection), one with a JSON body 413 and 415 too;
//! - an authenticated operation can answer 401 (no valid credential) and
//!   403 (role, or a cookie-authenticated change without the CSRF header);
//! - everything under `/api/` can answer 429 (the per-address budget) and
//!   503 (the database, or what the operation needs, is unavailable), both
//!   with `Retry-After`;
//! - container operations can answer what the engine's errors map to.
//!
//! [`ApiError`]: crate::error::ApiError

use serde_json::{json, Map, Value};

use crate::api;

/// The complete document.
pub fn document() -> Value {
    let (_, api_doc) = api::api_routes().split_for_parts();
    let (_, sys_doc) = api::system_routes().split_for_parts();
    let mut doc = api_doc;
    doc.merge(sys_doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serialises");
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (_method, op) in item.iter_mut() {
                if let Some(op) = op.as_object_mut() {
                    finish_operation(path, op);
                }
            }
        }
        // Added after the rules: a plugin's answer is its own.
        paths.insert("/api/v1/plugins/{name}/{path}".into(), plugin_route());
    }
    doc
}

const PROBLEM: &str = "application/problem+json";
const PROBLEM_REF: &str = "#/components/schemas/Problem";

fn problem_content() -> Value {
    json!({ PROBLEM: { "schema": { "$ref": PROBLEM_REF } } })
}

fn retry_after() -> Value {
    json!({
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": { "type": "integer", "minimum": 0 }
        }
    })
}

/// Whether the operation needs a credential (an optional one, `{}` among
/// the requirements, does not count).
fn secured(op: &Map<String, Value>) -> bool {
    op.get("security")
        .and_then(Value::as_array)
        .is_some_and(|reqs| {
            !reqs.is_empty()
                && !reqs
                    .iter()
                    .any(|r| r.as_object().is_some_and(Map::is_empty))
        })
}

fn finish_operation(path: &str, op: &mut Map<String, Value>) {
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let json_body = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .is_some_and(|c| c.contains_key("application/json"));
    let secured = secured(op);
    let api = path.starts_with("/api/");
    let container = path.starts_with("/api/v1/containers/");
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    // Errors are problem+json, whatever utoipa assumed.
    for r in responses.values_mut() {
        let Some(content) = r.get_mut("content").and_then(Value::as_object_mut) else {
            continue;
        };
        let is_problem = content
            .get("application/json")
            .and_then(|c| c.pointer("/schema/$ref"))
            .and_then(Value::as_str)
            == Some(PROBLEM_REF);
        if is_problem {
            let c = content.remove("application/json").expect("present");
            content.insert(PROBLEM.into(), c);
        }
    }
    let mut add = |status: &str, description: &str, retry: bool| {
        let r = responses
            .entry(status)
            .or_insert_with(|| json!({ "description": description, "content": problem_content() }));
        if retry {
            r.as_object_mut()
                .expect("a response is an object")
                .entry("headers")
                .or_insert_with(retry_after);
        }
    };
    if has_params || json_body {
        add(
            "400",
            "A parameter or the body does not match this description (`invalid_path`, \
             `invalid_query`, `malformed_json`, `invalid_body`, `validation_failed`)",
            false,
        );
    }
    if secured {
        add("401", "No valid credential (`unauthorized`)", false);
        add(
            "403",
            "The caller's role does not allow this, or a cookie-authenticated change lacks \
             the CSRF header (`forbidden`)",
            false,
        );
    }
    if json_body {
        add(
            "413",
            "The body is larger than the limit (`payload_too_large`)",
            false,
        );
        add(
            "415",
            "The body is not `application/json` (`unsupported_media_type`)",
            false,
        );
    }
    if container {
        add("404", "No such container (`not_found`)", false);
        add(
            "409",
            "The container's state does not allow this (`conflict`)",
            false,
        );
        add(
            "502",
            "The Docker engine refused the request (`docker_error`)",
            false,
        );
    }
    if api {
        add(
            "429",
            "Too many requests from this address (`rate_limited`)",
            true,
        );
        add(
            "503",
            "The database, the Docker engine or the plugin this needs is unavailable \
             (`database_unavailable`, `docker_unavailable`, `plugin_unavailable`)",
            true,
        );
    }
}

/// The plugins' catch-all route is plain axum (`{*path}` has no utoipa
/// equivalent): described here as `{path}`, any of five methods.
fn plugin_route() -> Value {
    let op = json!({
        "tags": ["plugins"],
        "summary": "A plugin's own route",
        "description": "Routed to the plugin's `handle-http` export with the path below the \
            plugin's name (it may contain slashes) and the query. Any signed-in user; the plugin \
            sees the caller and role. The plugin chooses the status, headers and body of its \
            answer; the host answers 404 when no such plugin runs, 503 when it is disabled or \
            failing, 502 when it failed.",
        "parameters": [
            {
                "name": "name", "in": "path", "required": true,
                "description": "The plugin's name",
                "schema": { "type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$" }
            },
            {
                "name": "path", "in": "path", "required": true,
                "description": "The path below the plugin's name",
                "schema": { "type": "string", "minLength": 1 }
            }
        ],
        // Any status and content type: the plugin's own answer, or one of
        // the host's problem+json errors (401 no credential, 404 no such
        // plugin running, 429 rate limited, 502 the plugin failed, 503 it
        // is disabled or failing), which share statuses with what a plugin
        // may answer itself.
        "responses": {
            "default": {
                "description": "The plugin's answer (any status and content type), or the host's \
                    problem+json error: 401 `unauthorized`, 404 `not_found` (no such plugin \
                    running), 429 `rate_limited`, 502 `plugin_error`, 503 `plugin_unavailable`",
                "content": { "*/*": {} }
            }
        },
        "security": [{ "bearer": [] }]
    });
    let mut item = Map::new();
    for m in ["get", "post", "put", "patch", "delete"] {
        let mut op = op.clone();
        op["operationId"] = json!(format!("plugin_route_{m}"));
        item.insert(m.into(), op);
    }
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_problem_json_and_shared_statuses_are_documented() {
        let doc = document();
        let op = &doc["paths"]["/api/v1/users"]["post"]["responses"];
        for status in ["400", "401", "403", "409", "413", "415", "429", "503"] {
            assert!(
                op[status]["content"][PROBLEM].is_object(),
                "POST /api/v1/users {status}: {}",
                op[status]
            );
            assert!(op[status]["content"]["application/json"].is_null());
        }
        assert!(op["429"]["headers"]["Retry-After"].is_object());
        // Optional credentials (/health) do not make 401 a possible answer.
        assert!(doc["paths"]["/health"]["get"]["responses"]["401"].is_null());
        let plugin = &doc["paths"]["/api/v1/plugins/{name}/{path}"]["get"];
        assert_eq!(plugin["parameters"][0]["schema"]["type"], "string");
        assert_eq!(plugin["parameters"][1]["schema"]["type"], "string");
        assert!(plugin["responses"]["default"]["content"]["*/*"].is_object());
    }
}
