//! Request size limits that act before a body is read: a request whose
//! declared `Content-Length` is over its route's limit is answered 413 at
//! once (instead of the handler waiting for a body it will refuse), and
//! the connection is closed rather than drained.
//!
//! The limits: `security.max_body_bytes` everywhere, except the two routes
//! that receive plugin packages (a component can be large), which allow
//! [`UPLOAD_LIMIT`]. The routes apply the same numbers with axum's
//! `DefaultBodyLimit` to bodies of undeclared length (chunked).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The largest plugin package accepted (API install, UI upload).
pub const UPLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// The body limit of a route.
pub fn body_limit(method: &Method, path: &str, max_body_bytes: usize) -> usize {
    let upload = *method == Method::POST && matches!(path, "/api/v1/plugins" | "/plugins/upload");
    if upload {
        UPLOAD_LIMIT
    } else {
        max_body_bytes
    }
}

/// Middleware: 413 for a declared length over the route's limit.
pub async fn declared_length(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = body_limit(
        req.method(),
        req.uri().path(),
        state.config.security.max_body_bytes,
    );
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => {
            let message = format!("the request body is {n} bytes; the limit here is {limit}");
            let mut res = if crate::ui::wants_html(&req) {
                crate::ui::UiError::new(http::StatusCode::PAYLOAD_TOO_LARGE, message)
                    .into_response()
            } else {
                ApiError::PayloadTooLarge(message).into_response()
            };
            // The body is not read: the connection cannot be reused.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_have_their_own_limit() {
        assert_eq!(
            body_limit(&Method::POST, "/api/v1/plugins", 1024),
            UPLOAD_LIMIT
        );
        assert_eq!(
            body_limit(&Method::POST, "/plugins/upload", 1024),
            UPLOAD_LIMIT
        );
        assert_eq!(body_limit(&Method::PATCH, "/api/v1/plugins", 1024), 1024);
        assert_eq!(body_limit(&Method::POST, "/api/v1/users", 1024), 1024);
    }
}
