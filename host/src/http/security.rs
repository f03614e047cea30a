//! Headers on every response that tell browsers to be strict, and the
//! API's rate limits (per client IP, per bridge token for the wake API).

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

/// The wake API the Caddy bridges call.
const WAKE_API: &str = "/api/v1/wake/";

/// The rate limit of `/api/`: a request to the wake API with a valid bridge
/// token spends that token's budget; everything else (a bridge route with
/// no or a wrong token included) spends the client IP's.
pub async fn api_rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let checked = match bridge_token(&state, &req) {
        Some(token) => state.limits.check_bridge(token),
        None => {
            let ip = req
                .extensions()
                .get::<ClientIp>()
                .copied()
                .unwrap_or_default();
            state.limits.check_api(ip.0)
        }
    };
    if let Err(e) = checked {
        return e.into_response();
    }
    next.run(req).await
}

/// The number of the bridge token a wake-API request carries, if valid.
fn bridge_token(state: &AppState, req: &Request) -> Option<usize> {
    if !req.uri().path().starts_with(WAKE_API) {
        return None;
    }
    let presented = crate::auth::bearer_in(req.headers())?;
    crate::auth::bridge_token_index(&state.bridge_tokens, presented)
}
