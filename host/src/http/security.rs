//! Headers on every response that tell browsers to be strict, and the
//! per-IP API rate limit.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client_ip::{ClientIp, ViaTls};
use crate::state::AppState;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

pub async fn headers(req: Request, next: Next) -> Response {
    let tls = req
        .extensions()
        .get::<ViaTls>()
        .copied()
        .unwrap_or_default();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // A handler may set a page-specific policy of its own.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if tls.0 {
        // Only over TLS: HSTS on plain HTTP would be ignored at best.
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    res
}

/// The global per-IP budget for `/api/`.
pub async fn api_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or_default();
    if let Err(e) = state.limits.check_api(ip.0) {
        return e.into_response();
    }
    next.run(req).await
}
