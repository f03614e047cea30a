//! `/api/v1/auth/*`: login, refresh, logout, and who am I.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use crate::auth::session::{self, Session};
use crate::auth::{AuthUser, REFRESH_COOKIE};
use crate::db::users::User;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::client_ip::{ClientIp, ViaTls};
use crate::http::extract::Json;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Omit to use the `wakedock_refresh` cookie.
    pub refresh_token: Option<String>,
}

fn with_cookies(jar: CookieJar, cookies: Vec<cookie::Cookie<'static>>) -> CookieJar {
    cookies.into_iter().fold(jar, |jar, c| jar.add(c))
}

fn session_response(state: &AppState, jar: CookieJar, tls: ViaTls, s: Session) -> Response {
    let jar = with_cookies(jar, session::cookies(state, &s, tls.0));
    (jar, axum::Json(s)).into_response()
}

/// Logs in with a username and password. Returns tokens and sets the
/// session cookies.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = Session),
        (status = 401, description = "Wrong username or password", body = Problem),
        (status = 429, description = "Too many attempts", body = Problem),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(tls): Extension<ViaTls>,
    jar: CookieJar,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    if req.username.is_empty() || req.password.is_empty() {
        return Err(ApiError::validation("username and password are required"));
    }
    let s = session::login(&state, &req.username, &req.password, ip).await?;
    Ok(session_response(&state, jar, tls, s))
}

fn refresh_token_from(body: &Bytes, jar: &CookieJar) -> ApiResult<Option<String>> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let r: RefreshRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
        r.refresh_token
    };
    Ok(from_body.or_else(|| jar.get(REFRESH_COOKIE).map(|c| c.value().to_string())))
}

/// Trades a refresh token (body or cookie) for a new token pair. The old
/// refresh token is revoked; presenting it again revokes the new one too.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body(content = RefreshRequest, description = "Optional when the refresh cookie is sent"),
    responses(
        (status = 200, body = Session),
        (status = 401, description = "Unknown, expired, revoked or reused token", body = Problem),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(tls): Extension<ViaTls>,
    jar: CookieJar,
    body: Bytes,
) -> ApiResult<Response> {
    let token = refresh_token_from(&body, &jar)?.ok_or_else(|| {
        ApiError::Unauthorized("no refresh token: send it in the body or cookie".into())
    })?;
    let s = session::refresh(&state, &token, ip).await?;
    Ok(session_response(&state, jar, tls, s))
}

/// Revokes the refresh token (body or cookie) and clears the cookies.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    request_body(content = RefreshRequest, description = "Optional when the refresh cookie is sent"),
    responses((status = 204, description = "Logged out"))
)]
pub async fn logout(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> ApiResult<Response> {
    let token = refresh_token_from(&body, &jar)?;
    // Best effort: name the actor when the caller still has a valid token.
    let actor = jar
        .get(crate::auth::ACCESS_COOKIE)
        .map(|c| c.value().to_string())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        })
        .and_then(|t| state.keys.verify(&t).ok())
        .map(|c| c.name);
    session::logout(&state, token.as_deref(), actor, ip).await;
    let jar = with_cookies(jar, session::clearing_cookies());
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

/// The calling user.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = User), (status = 401, body = Problem)),
    security(("bearer" = []))
)]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<User>> {
    let id = user.id.clone();
    let row = state
        .db
        .run(move |c| crate::db::users::by_id(c, &id))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("account removed".into()))?;
    Ok(Json(row.to_user()?))
}
