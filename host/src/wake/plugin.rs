//! Calls into the wake plugin's internal routes, with typed answers.
//!
//! The host calls them as a synthetic caller holding the `wakedock:host`
//! permission, which no user is ever given (see `api::plugins::plugin_role`),
//! so a user cannot reach them through `/api/v1/plugins/wake/...`.
//!
//! Errors are parsed once, here, into [`PluginError`] (cloneable, so every
//! waiter of one wake gets the same one) and turned into an `ApiError` at
//! the edge: the plugin's own answers keep their status and typed code; a
//! plugin that is not installed, disabled or failing gives 503; one that
//! trapped, ran out of time or answered nonsense gives 502.

use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use wakedock_plugin_runtime::caps::{AuthContext, HttpRequest, Role};
use wakedock_plugin_runtime::RuntimeError;

use super::contract::{ErrorBody, ErrorCode};
use super::WAKE_PLUGIN;
use crate::error::ApiError;
use crate::plugins::PluginManager;

/// The permission that marks the host as the caller.
pub const HOST_PERMISSION: &str = "wakedock:host";

/// Why a call into the wake plugin did not give an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginError {
    /// The plugin's own error answer.
    Answer(ErrorBody),
    /// Not installed, disabled, or failing (503).
    Unavailable(String),
    /// Trapped, hit a limit, or answered what the contract does not allow
    /// (502).
    Failed(String),
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::Answer(b) => ApiError::Service {
                status: StatusCode::from_u16(b.status).unwrap_or(StatusCode::BAD_GATEWAY),
                code: b.code,
                message: b.detail,
                errors: b.errors,
            },
            PluginError::Unavailable(m) => ApiError::PluginUnavailable(m),
            PluginError::Failed(m) => ApiError::PluginFailed(m),
        }
    }
}

impl PluginError {
    /// The plugin's error code, if it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            PluginError::Answer(b) => Some(b.code),
            _ => None,
        }
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

/// An error answer: the plugin's [`ErrorBody`], or a 502 naming what came.
fn error_of(status: u16, body: &[u8]) -> PluginError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if b.status == status => PluginError::Answer(b),
        _ => PluginError::Failed(format!(
            "wake plugin answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// Calls `method path` on the wake plugin; the raw body of a 2xx answer.
pub async fn call_raw(
    plugins: &PluginManager,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, PluginError> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let request = HttpRequest {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    let r = plugins
        .runtime()
        .handle_http(WAKE_PLUGIN, request, host_caller())
        .await
        .map_err(|e| match e {
            RuntimeError::NotLoaded(_) => PluginError::Unavailable(
                "wake-on-request is off: the wake plugin is not installed (see config/wakedock.yaml `plugins:`)".into(),
            ),
            RuntimeError::Disabled(_) => PluginError::Unavailable(
                "wake-on-request is off: the wake plugin is disabled".into(),
            ),
            RuntimeError::Failed { .. } => PluginError::Unavailable(e.to_string()),
            other => PluginError::Failed(other.to_string()),
        })?;
    if (200..300).contains(&r.status) {
        Ok(r.body)
    } else {
        Err(error_of(r.status, &r.body))
    }
}

/// Calls `method path` on the wake plugin and reads the answer as `T`.
pub async fn call<T: DeserializeOwned>(
    plugins: &PluginManager,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<T, PluginError> {
    let bytes = call_raw(plugins, method, path, body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| PluginError::Failed(format!("wake plugin sent an invalid answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_keep_status_and_typed_codes_only() {
        let e = ApiError::from(error_of(
            504,
            br#"{"status":504,"code":"wake_timeout","detail":"too slow"}"#,
        ));
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e.code(), "wake_timeout");
        assert_eq!(e.to_string(), "too slow");
        // An unknown code is not passed through as if it were the host's.
        let e = ApiError::from(error_of(
            418,
            br#"{"status":418,"code":"teapot","detail":"x"}"#,
        ));
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::BAD_GATEWAY, "plugin_error")
        );
        let e = ApiError::from(error_of(500, b"not json"));
        assert_eq!(e.code(), "plugin_error");
        // A status that disagrees with the body is not believed either.
        let e = ApiError::from(error_of(
            200,
            br#"{"status":504,"code":"wake_timeout","detail":"x"}"#,
        ));
        assert_eq!(e.code(), "plugin_error");
    }
}
