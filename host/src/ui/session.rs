//! `/login` and `/logout`: the foundation's cookie session, from a form.

use askama::Template;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::auth::{session, AuthUser, CSRF_COOKIE};
use crate::error::ApiError;
use crate::http::client_ip::{ClientIp, ViaTls};
use crate::state::AppState;

use super::page::{self, html, local, Ctx, Flash, UiForm};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    ctx: Ctx,
    next: &'a str,
    username: &'a str,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The login form carries a CSRF token of its own (login CSRF would sign a
/// victim into the attacker's account): the cookie is set here if missing.
fn login_csrf(jar: CookieJar, tls: bool) -> (CookieJar, String) {
    if let Some(c) = jar.get(CSRF_COOKIE).filter(|c| !c.value().is_empty()) {
        let v = c.value().to_string();
        return (jar, v);
    }
    let token = random_token();
    let cookie = Cookie::build((CSRF_COOKIE, token.clone()))
        .path("/")
        .secure(tls)
        .same_site(SameSite::Strict)
        .build();
    (jar.add(cookie), token)
}

fn login_page(
    jar: CookieJar,
    tls: bool,
    next: &str,
    username: &str,
    error: Option<String>,
    flash: Option<Flash>,
) -> Response {
    let (jar, csrf) = login_csrf(jar, tls);
    let ctx = Ctx {
        csrf,
        flash,
        ..Ctx::anonymous("login")
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let page = LoginPage {
        ctx,
        next,
        username,
        error,
    };
    (status, jar, html(page)).into_response()
}

/// `GET /login`: the form; a visitor who is signed in goes straight on.
pub async fn show(
    Extension(tls): Extension<ViaTls>,
    jar: CookieJar,
    user: Result<AuthUser, ApiError>,
    q: Result<Query<NextQuery>, QueryRejection>,
) -> Response {
    // An unreadable query is no reason to refuse the form.
    let next = local(q.ok().and_then(|q| q.0.next).as_deref(), "/");
    // Signed in means what every page checks (a valid token of an active
    // user, not signed out since), so a stale cookie cannot loop between
    // here and the page it came from.
    if user.is_ok() {
        return Redirect::to(&next).into_response();
    }
    let flash = jar
        .get(page::FLASH_COOKIE)
        .and_then(|c| Flash::decode(c.value()));
    let jar = jar.remove(Cookie::build(page::FLASH_COOKIE).path("/"));
    login_page(jar, tls.0, &next, "", None, flash)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`: checks the credentials with the same code as the API
/// (rate limits and audit included) and sets the session cookies.
pub async fn submit(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(tls): Extension<ViaTls>,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    let f: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or(LoginForm {
        username: String::new(),
        password: String::new(),
        csrf: String::new(),
        next: None,
    });
    let next = local(f.next.as_deref(), "/");
    let cookie_ok = jar
        .get(CSRF_COOKIE)
        .is_some_and(|c| !c.value().is_empty() && crate::auth::same(c.value(), &f.csrf));
    let fail = |jar, msg: String| login_page(jar, tls.0, &next, &f.username, Some(msg), None);
    if !cookie_ok {
        return fail(
            jar,
            "Your login form had expired; please sign in again.".into(),
        );
    }
    if f.username.trim().is_empty() || f.password.is_empty() {
        return fail(jar, "Enter your username and password.".into());
    }
    match session::login(&state, f.username.trim(), &f.password, ip).await {
        Ok(s) => {
            let jar = session::cookies(&state, &s, tls.0)
                .into_iter()
                .fold(jar, |jar, c| jar.add(c));
            (jar, Redirect::to(&next)).into_response()
        }
        Err(ApiError::RateLimited { retry_after }) => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let mut res = fail(
                jar,
                format!("Too many login attempts. Wait {secs} s and try again."),
            );
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            res
        }
        Err(ApiError::Unauthorized(m)) if m.contains("disabled") => {
            fail(jar, "This account is disabled.".into())
        }
        Err(ApiError::Unauthorized(_)) => fail(jar, "Wrong username or password.".into()),
        Err(e) => fail(jar, page::describe(&e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    /// `yes`: sign out every browser and API client of this user.
    everywhere: Option<String>,
}

/// `POST /logout`: ends the session here (the page's script also revokes
/// the refresh token through the API, which only it can reach); with
/// `everywhere=yes`, every session of the user.
pub async fn logout(State(state): State<AppState>, f: UiForm<LogoutForm>) -> Response {
    let user = &f.user.user;
    if f.form.everywhere.as_deref() == Some("yes") {
        if let Err(e) = session::logout_everywhere(&state, user).await {
            return page::redirect_with("/", false, page::describe(&e));
        }
        let jar = session::clearing_cookies()
            .into_iter()
            .fold(CookieJar::new(), |jar, c| jar.add(c));
        return (
            jar,
            page::redirect_with("/login", true, "You are signed out everywhere."),
        )
            .into_response();
    }
    session::logout(&state, None, Some(user.username.clone()), user.ip).await;
    let jar = session::clearing_cookies()
        .into_iter()
        .fold(CookieJar::new(), |jar, c| jar.add(c));
    (
        jar,
        page::redirect_with("/login", true, "You are signed out."),
    )
        .into_response()
}
