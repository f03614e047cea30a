//! What every page shares: the signed-in user ([`UiUser`], which sends a
//! visitor without a session to `/login`), the page context for the layout
//! ([`Ctx`]), browser forms checked for CSRF ([`UiForm`]), one-shot flash
//! messages after a redirect, and errors rendered as pages ([`UiError`]).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::auth::{self, AuthUser, CSRF_COOKIE};
use crate::db::users::Role;
use crate::error::ApiError;
use crate::state::AppState;

use super::assets;

pub const FLASH_COOKIE: &str = "wakedock_flash";

/// A message shown once, on the page a form redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

impl Flash {
    fn encode(&self) -> String {
        let raw = format!("{}{}", if self.ok { 'o' } else { 'e' }, self.text);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(v: &str) -> Option<Flash> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let mut chars = raw.chars();
        let ok = match chars.next()? {
            'o' => true,
            'e' => false,
            _ => return None,
        };
        Some(Flash {
            ok,
            text: chars.as_str().chars().take(500).collect(),
        })
    }
}

/// The layout's view of the request: who, what they may do, where they are.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub username: String,
    pub role: &'static str,
    /// Role `user` or above: may operate containers and services.
    pub can_operate: bool,
    pub is_admin: bool,
    /// The CSRF token every form echoes.
    pub csrf: String,
    pub flash: Option<Flash>,
    /// The nav entry to highlight.
    pub section: &'static str,
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
    /// Navigation entries of plugins' pages the user may see.
    pub plugin_nav: Vec<super::plugin_pages::NavLink>,
    /// The plugin whose page this is (its nav entry is highlighted).
    pub plugin: String,
}

impl Ctx {
    /// A context for pages seen without a session (login, errors).
    pub fn anonymous(section: &'static str) -> Ctx {
        Ctx {
            username: String::new(),
            role: "",
            can_operate: false,
            is_admin: false,
            csrf: String::new(),
            flash: None,
            section,
            css: &assets::CSS.url,
            js: &assets::JS.url,
            icon: &assets::ICON.url,
            plugin_nav: Vec::new(),
            plugin: String::new(),
        }
    }

    pub fn signed_in(&self) -> bool {
        !self.username.is_empty()
    }
}

/// The signed-in user of a page request. Without a valid session the
/// visitor is sent to `/login` (and back here afterwards).
#[derive(Debug, Clone)]
pub struct UiUser {
    pub user: AuthUser,
    pub csrf: String,
    pub flash: Option<Flash>,
    /// Plugins' navigation entries this user may see.
    pub nav: Vec<super::plugin_pages::NavLink>,
}

impl UiUser {
    pub fn ctx(&self, section: &'static str) -> Ctx {
        Ctx {
            username: self.user.username.clone(),
            role: self.user.role.as_str(),
            can_operate: self.user.role >= Role::User,
            is_admin: self.user.role >= Role::Admin,
            csrf: self.csrf.clone(),
            flash: self.flash.clone(),
            plugin_nav: self.nav.clone(),
            ..Ctx::anonymous(section)
        }
    }

    /// An error shown inside the layout of `section`.
    pub fn fail(&self, section: &'static str, e: impl Into<ApiError>) -> UiError {
        UiError::from(e.into()).within(self.ctx(section))
    }
}

fn login_redirect(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| *p != "/")
        .map(|p| format!("?next={}", urlencode(p)))
        .unwrap_or_default();
    Redirect::to(&format!("/login{next}")).into_response()
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Resolves the caller for a page; `form_csrf` is the token a form sent.
pub(super) async fn resolve(
    parts: &Parts,
    state: &AppState,
    form_csrf: Option<&str>,
) -> Result<UiUser, Response> {
    match auth::authenticate(parts, state, form_csrf).await {
        Ok(user) => Ok(UiUser::of(parts, user, state)),
        Err(e) => Err(refusal(parts, e)),
    }
}

/// A page's answer to a caller who may not see it: no session → the login
/// page (and back afterwards); anything else → an error page.
pub(super) fn refusal(parts: &Parts, e: ApiError) -> Response {
    match e {
        ApiError::Unauthorized(_) => login_redirect(parts),
        e => UiError::from(e).into_response(),
    }
}

impl UiUser {
    /// The page view of an authenticated caller.
    pub(super) fn of(parts: &Parts, user: AuthUser, state: &AppState) -> UiUser {
        let jar = CookieJar::from_headers(&parts.headers);
        UiUser {
            nav: super::plugin_pages::nav_for(state, user.role),
            user,
            csrf: jar
                .get(CSRF_COOKIE)
                .map(|c| c.value().to_string())
                .unwrap_or_default(),
            flash: jar.get(FLASH_COOKIE).and_then(|c| Flash::decode(c.value())),
        }
    }
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            // Changes go through `UiForm`, which checks the form's token.
            return Err(UiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "This address only shows a page.",
            )
            .into_response());
        }
        resolve(parts, state, None).await
    }
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A submitted browser form (`application/x-www-form-urlencoded`) from a
/// signed-in user, whose `csrf` field matched the session's CSRF cookie.
#[derive(Debug)]
pub struct UiForm<T> {
    pub user: UiUser,
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for UiForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|_| {
                UiError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form was too large.")
                    .into_response()
            })?;
        let csrf: CsrfField = serde_urlencoded::from_bytes(&bytes).map_err(|_| {
            UiError::new(StatusCode::BAD_REQUEST, "The form could not be read.").into_response()
        })?;
        let user = resolve(&parts, state, Some(&csrf.csrf)).await?;
        let form: T = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            UiError::new(
                StatusCode::BAD_REQUEST,
                format!("The form could not be read: {e}."),
            )
            .within(user.ctx(""))
            .into_response()
        })?;
        Ok(UiForm { user, form })
    }
}

/// An error, shown as a page (never as JSON) inside the layout when the
/// caller is signed in.
#[derive(Debug)]
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
    ctx: Option<Box<Ctx>>,
}

impl UiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            ctx: None,
        }
    }

    pub fn within(mut self, ctx: Ctx) -> Self {
        self.ctx = Some(Box::new(ctx));
        self
    }
}

/// The sentence a person sees for an API error.
pub fn describe(e: &ApiError) -> String {
    match e {
        ApiError::Internal(_) => {
            "Something went wrong on the server; the host's log has the details.".into()
        }
        ApiError::DatabaseUnavailable(_) => {
            "The database is unavailable right now; try again in a moment.".into()
        }
        ApiError::RateLimited { .. } => format!("Too many requests: {e}."),
        other => {
            let mut s = other.to_string();
            if let Some(first) = s.get(0..1) {
                let upper = first.to_uppercase();
                s.replace_range(0..1, &upper);
            }
            if !s.ends_with('.') {
                s.push('.');
            }
            s
        }
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        if matches!(e, ApiError::Internal(_) | ApiError::DatabaseUnavailable(_)) {
            tracing::error!(error = ?e, "page failed");
        }
        UiError::new(e.status(), describe(&e))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    ctx: Ctx,
    status: u16,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            ctx: self.ctx.map(|c| *c).unwrap_or_else(|| Ctx::anonymous("")),
            status: self.status.as_u16(),
            message: &self.message,
        };
        let mut res = html(page);
        *res.status_mut() = self.status;
        res
    }
}

pub type UiResult = Result<Response, UiError>;

/// Renders a page as `text/html`, never cached (it shows live state).
pub fn html(t: impl Template) -> Response {
    match t.render() {
        Ok(body) => {
            let mut res = body.into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// Renders a page for `u`, and forgets the flash message it has just shown.
pub fn page(u: &UiUser, t: impl Template) -> Response {
    let res = html(t);
    if u.flash.is_some() {
        return (CookieJar::new().add(flash_cookie(String::new(), 0)), res).into_response();
    }
    res
}

fn flash_cookie(value: String, age: i64) -> Cookie<'static> {
    Cookie::build((FLASH_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(age))
        .build()
}

/// Where a form came from, if it is a path on this site (never another
/// site): a single leading `/`, no `\\` anywhere (browsers read it as `/`,
/// so `/\\evil` is `//evil`), and no control characters (a tab or newline
/// is dropped by browsers, which turns `/\t/evil` into `//evil`, and cannot
/// go into a `Location` header at all). Anything else is `default`.
pub fn local(back: Option<&str>, default: &str) -> String {
    match back {
        Some(b)
            if b.starts_with('/')
                && !b.starts_with("//")
                && !b.contains('\\')
                && !b.chars().any(char::is_control) =>
        {
            b.to_string()
        }
        _ => default.to_string(),
    }
}

/// After a form: back to `to`, with a message for the next page.
pub fn redirect_with(to: &str, ok: bool, text: impl Into<String>) -> Response {
    let flash = Flash {
        ok,
        text: text.into(),
    };
    (
        CookieJar::new().add(flash_cookie(flash.encode(), 60)),
        Redirect::to(to),
    )
        .into_response()
}

/// After a form that did `what` (or failed to): back to `to` with the
/// outcome as the flash message.
pub fn outcome<T>(to: &str, r: Result<T, ApiError>, what: impl FnOnce(T) -> String) -> Response {
    match r {
        Ok(v) => redirect_with(to, true, what(v)),
        Err(e) => redirect_with(to, false, describe(&e)),
    }
}

/// After a form: a refusal for lack of role is a page of its own (status
/// 403, nothing to go back to); any other outcome is a flash message on
/// `to`.
pub fn after<T>(
    u: &UiUser,
    section: &'static str,
    to: &str,
    r: Result<T, ApiError>,
    what: impl FnOnce(T) -> String,
) -> UiResult {
    match r {
        Err(e @ ApiError::Forbidden(_)) => Err(u.fail(section, e)),
        r => Ok(outcome(to, r, what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_round_trips() {
        let f = Flash {
            ok: false,
            text: "Could not stop «web»: no".into(),
        };
        assert_eq!(Flash::decode(&f.encode()), Some(f));
        assert_eq!(Flash::decode("!!"), None);
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local(Some("/containers?q=a"), "/"), "/containers?q=a");
        assert_eq!(local(Some("//evil.example"), "/"), "/");
        assert_eq!(local(Some("https://evil.example"), "/"), "/");
        assert_eq!(local(None, "/x"), "/x");
        for evil in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n//evil.example",
            "/\\evil.example",
            "/x\\y",
            "\t//evil.example",
            "/\u{7f}/evil.example",
            "/\u{85}/evil.example",
            "",
            "evil.example",
        ] {
            assert_eq!(local(Some(evil), "/"), "/", "{evil:?}");
        }
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            describe(&ApiError::Forbidden(
                "this action needs the user role".into()
            )),
            "This action needs the user role."
        );
        assert!(!describe(&ApiError::internal(anyhow::anyhow!("secret"))).contains("secret"));
    }
}
