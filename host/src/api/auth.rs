//! `/api/v1/auth/*`: login, refresh, logout, and who am I.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use crate::auth::session::{self, Session};
use crate::auth::{password, AuthUser, REFRESH_COOKIE};
use crate::db::users::User;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::client_ip::{ClientIp, ViaTls};
use crate::http::extract::Json;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    #[schema(min_length = 1, max_length = 1024)]
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
    if req.username.chars().count() > 64 || req.password.chars().count() > password::MAX_LEN {
        return Err(ApiError::validation(format!(
            "username is at most 64 characters, password at most {}",
            password::MAX_LEN
        )));
    }
    let s = session::login(&state, &req.username, &req.password, ip).await?;
    Ok(session_response(&state, jar, tls, s))
}

/// Where a refresh token came from.
enum Presented {
    Body(String),
    /// The `wakedock_refresh` cookie: a browser sends it by itself, so its
    /// use must be proven with the CSRF header.
    Cookie(String),
}

impl Presented {
    fn token(&self) -> &str {
        match self {
            Presented::Body(t) | Presented::Cookie(t) => t,
        }
    }
}

fn refresh_token_from(
    headers: &HeaderMap,
    body: &Bytes,
    jar: &CookieJar,
) -> ApiResult<Option<Presented>> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        // `null` is no body, as the document allows.
        let r: Option<RefreshRequest> = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                ApiError::bad_request("invalid_body", e.to_string())
            } else {
                ApiError::bad_request("malformed_json", format!("malformed JSON: {e}"))
            }
        })?;
        r.and_then(|r| r.refresh_token)
    };
    Ok(from_body.map(Presented::Body).or_else(|| {
        jar.get(REFRESH_COOKIE)
            .map(|c| Presented::Cookie(c.value().to_string()))
    }))
}

/// Trades a refresh token (body or cookie) for a new token pair. The old
/// refresh token is revoked; presenting it again revokes the new one too.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "Optional when the refresh cookie is sent (then the CSRF header is required)"),
    responses(
        (status = 200, body = Session),
        (status = 401, description = "Unknown, expired, revoked or reused token", body = Problem),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(tls): Extension<ViaTls>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> ApiResult<Response> {
    let token = refresh_token_from(&headers, &body, &jar)?.ok_or_else(|| {
        ApiError::Unauthorized("no refresh token: send it in the body or cookie".into())
    })?;
    if let Presented::Cookie(_) = token {
        crate::auth::check_csrf(&headers, &jar, None)?;
    }
    let s = session::refresh(&state, token.token(), ip).await?;
    Ok(session_response(&state, jar, tls, s))
}

/// Revokes the refresh token (body or cookie) and clears the cookies.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "Optional when the refresh cookie is sent"),
    responses((status = 204, description = "Logged out"))
)]
pub async fn logout(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> ApiResult<Response> {
    let token = refresh_token_from(&headers, &body, &jar)?;
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
    session::logout(&state, token.as_ref().map(Presented::token), actor, ip).await;
    let jar = with_cookies(jar, session::clearing_cookies());
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}

/// Signs the caller out everywhere: every refresh token is revoked and
/// every access token issued so far stops working at once (other browsers
/// and API clients included). Clears this client's cookies.
#[utoipa::path(
    post, path = "/api/v1/auth/logout-all", tag = "auth",
    responses((status = 204, description = "Signed out everywhere")),
    security(("bearer" = []))
)]
pub async fn logout_all(
    State(state): State<AppState>,
    user: AuthUser,
    jar: CookieJar,
) -> ApiResult<Response> {
    session::logout_everywhere(&state, &user).await?;
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
