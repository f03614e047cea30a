//! Authentication and authorization: who is calling, and may they do this.
//!
//! A caller proves identity with a JWT access token, sent either as
//! `Authorization: Bearer` (API clients, no CSRF concern) or in the httpOnly
//! `wakedock_access` cookie (browsers). Cookie-authenticated requests that
//! change state must also carry the CSRF token from the readable
//! `wakedock_csrf` cookie in the `X-CSRF-Token` header (double submit).

pub mod jwt;
pub mod password;
pub mod ratelimit;
pub mod session;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method;
use axum_extra::extract::cookie::CookieJar;

use crate::db::audit::NewAuditEntry;
use crate::db::users::{self, Role};
use crate::error::ApiError;
use crate::http::client_ip::ClientIp;
use crate::state::AppState;

pub const ACCESS_COOKIE: &str = "wakedock_access";
pub const REFRESH_COOKIE: &str = "wakedock_refresh";
pub const CSRF_COOKIE: &str = "wakedock_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub username: String,
    pub role: Role,
    pub ip: ClientIp,
}

impl AuthUser {
    /// An audit entry for an action this user takes on `target`, presumed
    /// successful until the caller says otherwise.
    pub fn audit_entry(&self, action: &str, target: &str) -> NewAuditEntry {
        let mut e = NewAuditEntry::new(action, "success");
        e.actor = Some(self.username.clone());
        e.target = Some(target.to_string());
        e.client_ip = Some(self.ip.to_string());
        e
    }

    /// Like [`AuthUser::require`], and a refusal is audited as `denied`.
    pub async fn require_audited(
        &self,
        state: &AppState,
        role: Role,
        action: &str,
        target: &str,
    ) -> Result<(), ApiError> {
        if let Err(e) = self.require(role) {
            let mut entry = self.audit_entry(action, target);
            entry.result = "denied".into();
            state.audit(entry).await;
            return Err(e);
        }
        Ok(())
    }

    /// Refuses callers below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this action needs the {} role; you are {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    bearer_in(&parts.headers)
}

/// The bearer token of an `Authorization` header.
pub(crate) fn bearer_in(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Which of the bridge `tokens` was `presented`. Every token is compared,
/// so timing says nothing about which one (or whether any) matched.
pub(crate) fn bridge_token_index(tokens: &[String], presented: &str) -> Option<usize> {
    tokens.iter().enumerate().fold(
        None,
        |found, (i, t)| if same(t, presented) { Some(i) } else { found },
    )
}

/// Constant-time comparison, so the CSRF check leaks nothing by timing.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The double-submit check of a cookie-authenticated change: the CSRF
/// cookie's value must come back in `X-CSRF-Token` (or, for a browser form
/// whose body was read, as `form_csrf`).
pub fn check_csrf(
    headers: &http::HeaderMap,
    jar: &CookieJar,
    form_csrf: Option<&str>,
) -> Result<(), ApiError> {
    let header = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form_csrf);
    let cookie = jar.get(CSRF_COOKIE).map(|c| c.value());
    match (header, cookie) {
        (Some(h), Some(c)) if !c.is_empty() && same(h, c) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "missing or wrong CSRF token: send the wakedock_csrf cookie's value in X-CSRF-Token"
                .into(),
        )),
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state, None).await
    }
}

/// Who is calling. A cookie-authenticated change must carry the CSRF
/// cookie's value in `X-CSRF-Token` or, for browser forms (whose body the
/// caller has read), as `form_csrf`.
pub async fn authenticate(
    parts: &Parts,
    state: &AppState,
    form_csrf: Option<&str>,
) -> Result<AuthUser, ApiError> {
    let (user, via_cookie) = identify(parts, state).await?;
    if via_cookie && changes_state(&parts.method) {
        check_csrf(
            &parts.headers,
            &CookieJar::from_headers(&parts.headers),
            form_csrf,
        )?;
    }
    Ok(user)
}

/// Who is calling, and whether they authenticated with the session cookie
/// (then a change must still pass [`check_csrf`], which the caller does).
/// For a route that must know the caller before it reads a body whose
/// first field carries the CSRF token (a multipart upload).
pub async fn identify(parts: &Parts, state: &AppState) -> Result<(AuthUser, bool), ApiError> {
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .copied()
        .unwrap_or_default();
    let jar = CookieJar::from_headers(&parts.headers);
    let (token, via_cookie) = match bearer(parts) {
        Some(t) => (t.to_string(), false),
        None => match jar.get(ACCESS_COOKIE) {
            Some(c) => (c.value().to_string(), true),
            None => {
                return Err(ApiError::Unauthorized(
                    "authentication required: send a bearer token or log in".into(),
                ))
            }
        },
    };
    let claims = state.keys.verify(&token).map_err(ApiError::Unauthorized)?;
    // The token says who; the database says whether they still may. A
    // deactivated user, a changed role or a sign-out everywhere takes
    // effect at once.
    let id = claims.sub.clone();
    let row = state.db.run(move |c| users::by_id(c, &id)).await?;
    let row = row
        .filter(|r| r.active)
        .ok_or_else(|| ApiError::Unauthorized("account is disabled or removed".into()))?;
    if claims.ver != row.token_version {
        return Err(ApiError::Unauthorized(
            "this session was signed out (password changed or signed out everywhere): sign in again"
                .into(),
        ));
    }
    let user = row.to_user()?;
    Ok((
        AuthUser {
            id: user.id,
            username: user.username,
            role: user.role,
            ip,
        },
        via_cookie,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    #[test]
    fn roles_are_ordered() {
        let u = AuthUser {
            id: "1".into(),
            username: "v".into(),
            role: Role::Viewer,
            ip: ClientIp::default(),
        };
        assert!(u.require(Role::Viewer).is_ok());
        assert!(matches!(u.require(Role::User), Err(ApiError::Forbidden(_))));
        assert!(Role::Admin > Role::User && Role::User > Role::Viewer);
    }
}
