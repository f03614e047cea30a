//! The one error type every HTTP handler returns.
//!
//! Clients get RFC 7807 `application/problem+json` with a stable
//! machine-readable `code` and a human `detail`. Internal failures are logged
//! with their cause and answered with a generic 500, so nothing about the
//! host's internals leaks to the caller.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Errors a request can end in.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    #[error("the Docker engine is unreachable: {0}")]
    EngineUnavailable(String),
    #[error("the Docker engine refused the request: {0}")]
    EngineError(String),
    #[error("the Docker engine did not answer in time: {0}")]
    EngineTimeout(String),
    #[error("{0}")]
    PluginUnavailable(String),
    #[error("the plugin failed: {0}")]
    PluginFailed(String),
    /// A wake-on-request answer other than success (`wake_timeout`,
    /// `unknown_service`, `invalid_service`...), with per-field errors for
    /// invalid service definitions.
    #[error("{message}")]
    Service {
        status: StatusCode,
        code: wakedock_plugin_wake::contract::ErrorCode,
        message: String,
        errors: Vec<wakedock_plugin_wake::service::ValidationError>,
    },
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The problem+json body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`urn:wakedock:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// Per-field problems of an invalid service definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<wakedock_plugin_wake::service::ValidationError>>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::bad_request("validation_failed", message)
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::EngineUnavailable(_) | Self::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::EngineError(_) | Self::PluginFailed(_) => StatusCode::BAD_GATEWAY,
            Self::EngineTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::PluginUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Service { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::EngineUnavailable(_) => "docker_unavailable",
            Self::EngineError(_) => "docker_error",
            Self::EngineTimeout(_) => "docker_timeout",
            Self::PluginUnavailable(_) => "plugin_unavailable",
            Self::PluginFailed(_) => "plugin_error",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::Internal(_) => "internal_error",
            Self::Service { code, .. } => code.as_str(),
        }
    }

    /// The `Retry-After` seconds of a rate-limit refusal.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } => Some(retry_after_secs(*retry_after)),
            _ => None,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("urn:wakedock:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_string(),
            errors: match self {
                Self::Service { errors, .. } if !errors.is_empty() => Some(errors.clone()),
                _ => None,
            },
        }
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = ?e, "request failed"),
            Self::DatabaseUnavailable(e) => tracing::error!(error = ?e, "database unavailable"),
            Self::EngineError(e) | Self::EngineUnavailable(e) | Self::EngineTimeout(e) => {
                tracing::warn!(error = %e, "docker engine error")
            }
            _ => {}
        }
        let problem = self.problem();
        let mut response = (self.status(), axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::RateLimited { retry_after } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            Self::EngineUnavailable(_) | Self::DatabaseUnavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::Service { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Unavailable(e) => Self::DatabaseUnavailable(e),
            // Lock contention is temporary: 503 with Retry-After, and the
            // engine's text ("database is locked") never reaches the caller.
            crate::db::DbError::Query(e) if crate::db::is_contention(&e) => {
                Self::DatabaseUnavailable(e.into())
            }
            crate::db::DbError::Query(e) => Self::Internal(e.into()),
            crate::db::DbError::Other(e) => Self::Internal(e),
        }
    }
}

impl From<crate::docker::EngineError> for ApiError {
    fn from(e: crate::docker::EngineError) -> Self {
        use crate::docker::EngineError as E;
        match e {
            E::NotFound(what) => Self::NotFound(format!("no such container: {what}")),
            E::Conflict(m) => Self::Conflict(m),
            E::BadRequest(m) => Self::bad_request("docker_bad_request", m),
            E::Unavailable(m) => Self::EngineUnavailable(m),
            E::Timeout(m) => Self::EngineTimeout(m),
            E::Engine(m) => Self::EngineError(m),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::internal(anyhow::anyhow!("secret path /etc/shadow"));
        let p = e.problem();
        assert_eq!(p.status, 500);
        assert_eq!(p.code, "internal_error");
        assert!(!p.detail.contains("shadow"));
    }

    #[test]
    fn rate_limit_sets_retry_after_rounded_up() {
        let r = ApiError::RateLimited {
            retry_after: Duration::from_millis(1200),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
