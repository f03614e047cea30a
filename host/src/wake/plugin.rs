//! Calls into the wake plugin's internal routes.
//!
//! The host calls them as a synthetic caller holding the `wakedock:host`
//! permission, which no user is ever given (see `api::plugins::plugin_role`),
//! so a user cannot reach them through `/api/v1/plugins/wake/...`.

use axum::http::StatusCode;
use wakedock_plugin_runtime::caps::{AuthContext, HttpRequest, Role};
use wakedock_plugin_runtime::RuntimeError;

use crate::error::ApiError;
use crate::plugins::PluginManager;

use super::WAKE_PLUGIN;

/// The permission that marks the host as the caller.
pub const HOST_PERMISSION: &str = "wakedock:host";

/// A successful answer of the plugin.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, ApiError> {
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::PluginFailed(format!("wake plugin sent invalid JSON: {e}")))
    }
}

fn host_caller() -> AuthContext {
    AuthContext {
        user_id: "wakedock-host".into(),
        username: "wakedock".into(),
        role: Role::Admin,
        permissions: vec![HOST_PERMISSION.into()],
    }
}

/// The codes the wake plugin answers with, as `ApiError::Service` codes.
const CODES: &[&str] = &[
    "wake_timeout",
    "unknown_service",
    "wake_failed",
    "invalid_service",
    "service_exists",
    "defined_in_config",
    "not_sleepable",
    "sleep_failed",
    "docker_unavailable",
    "storage_unavailable",
    "invalid_body",
];

/// Turns an error answer (`{"code","detail","errors"?}`) into the API error
/// the client sees, with the plugin's status and code.
pub fn error_of(status: u16, body: &[u8]) -> ApiError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let detail = v
        .get("detail")
        .and_then(|d| d.as_str())
        .unwrap_or("the wake plugin refused the request")
        .to_owned();
    let code = v.get("code").and_then(|c| c.as_str()).unwrap_or("");
    match (
        StatusCode::from_u16(status).ok(),
        CODES.iter().find(|c| **c == code),
    ) {
        (Some(status), Some(code)) => ApiError::Service {
            status,
            code,
            message: detail,
            errors: v.get("errors").cloned(),
        },
        _ => ApiError::PluginFailed(format!("wake plugin answered {status}: {detail}")),
    }
}

/// Calls `method path` on the wake plugin; a 2xx answer, or the mapped
/// error.
pub async fn call(
    plugins: &PluginManager,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Answer, ApiError> {
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    let r = plugins
        .runtime()
        .handle_http(WAKE_PLUGIN, request, host_caller())
        .await
        .map_err(|e| match e {
            RuntimeError::NotLoaded(_) => ApiError::PluginUnavailable(
                "wake-on-request is off: the wake plugin is not installed (see config/wakedock.yaml `plugins:`)".into(),
            ),
            RuntimeError::Disabled(_) => {
                ApiError::PluginUnavailable("wake-on-request is off: the wake plugin is disabled".into())
            }
            RuntimeError::Failed { .. } => ApiError::PluginUnavailable(e.to_string()),
            other => ApiError::PluginFailed(other.to_string()),
        })?;
    if (200..300).contains(&r.status) {
        Ok(Answer {
            status: r.status,
            body: r.body,
        })
    } else {
        Err(error_of(r.status, &r.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_keep_status_and_known_codes_only() {
        let e = error_of(504, br#"{"code":"wake_timeout","detail":"too slow"}"#);
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e.code(), "wake_timeout");
        assert_eq!(e.to_string(), "too slow");
        // An unknown code is not passed through as if it were the host's.
        let e = error_of(418, br#"{"code":"teapot","detail":"x"}"#);
        assert_eq!(e.code(), "plugin_error");
        let e = error_of(500, b"not json");
        assert_eq!(e.code(), "plugin_error");
    }
}
