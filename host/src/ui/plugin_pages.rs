//! Plugin pages (`/p/{plugin}/...`): every plugin, first- or third-party,
//! may contribute pages to the browser UI through its own `handle-http`.
//! The manifest's `[[pages]]` become navigation entries; a request under
//! the plugin's UI path reaches the plugin with the header
//! `x-wakedock-page: /p/{plugin}`; an HTML answer is put inside the host's
//! layout.
//!
//! What keeps a page from acting as the signed-in user beyond the plugin's
//! own routes:
//! - **its HTML is reduced to an allowlist** ([`sanitize`], ammonia): no
//!   script, style, event handler, frame, object, meta refresh, base or
//!   password field; ids are prefixed so they cannot collide with the
//!   layout's; only the host script's own `data-` hooks survive;
//! - **a strict policy** ([`policy`]): scripts and styles only the host's
//!   own two files, images only from the host's assets and `data:`, forms
//!   only to the plugin's own path (and the layout's sign-out), no frames;
//! - **forms carry a token of their own** ([`form_token`]): an HMAC of the
//!   plugin and the user under a key the host draws at start, injected by
//!   the host into every form and checked before the plugin sees the post.
//!   It is not the session's CSRF token (which the page never sees), so a
//!   plugin page cannot post to the host's forms or another plugin's, and
//!   a forged post from another site is refused;
//! - **no credentials cross**: cookies, `Authorization` and the CSRF header
//!   stay with the host; the plugin's `Set-Cookie`, security headers and
//!   `x-wakedock-*` are dropped; a redirect may only lead to the plugin's
//!   own pages.
//!
//! The host's script renders live output for `data-compose-output`
//! elements (Compose stacks), and fetches a page again when the plugin
//! publishes one of the topics its entry names ([`super::plugin_live`]),
//! so a page needs no script of its own.

use std::sync::OnceLock;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wakedock_plugin_runtime::caps::HttpRequest;
use wakedock_plugin_runtime::PageEntry;

use crate::api::plugins::{call_plugin, passes_through, request_headers};
use crate::db::users::Role;
use crate::state::AppState;

use super::assets;
use super::page::{self, Ctx, UiError, UiUser};

/// The form field that carries a page's token.
pub const TOKEN_FIELD: &str = "wd_token";

/// A navigation entry to a plugin's page.
#[derive(Debug, Clone)]
pub struct NavLink {
    pub plugin: String,
    pub title: String,
    pub href: String,
}

/// The entries of every enabled plugin that `role` may see.
pub fn nav_for(state: &AppState, role: Role) -> Vec<NavLink> {
    let mut out = Vec::new();
    for (plugin, pages) in state.plugins.runtime().pages() {
        for p in pages {
            if role >= page_role(&p) {
                let path = if p.path == "/" { "/" } else { p.path.as_str() };
                out.push(NavLink {
                    href: format!("/p/{plugin}{path}"),
                    plugin: plugin.clone(),
                    title: p.title.clone(),
                });
            }
        }
    }
    out
}

/// The least role a page entry is for.
pub fn page_role(entry: &PageEntry) -> Role {
    match entry.role.as_str() {
        "admin" => Role::Admin,
        "user" => Role::User,
        _ => Role::Viewer,
    }
}

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// The token forms of `plugin`'s pages carry for `user_id`.
pub fn form_token(plugin: &str, user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key()).expect("HMAC takes any key length");
    mac.update(b"wakedock plugin page\0");
    mac.update(plugin.as_bytes());
    mac.update(b"\0");
    mac.update(user_id.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..20])
}

fn token_matches(plugin: &str, user_id: &str, given: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key()).expect("HMAC takes any key length");
    mac.update(b"wakedock plugin page\0");
    mac.update(plugin.as_bytes());
    mac.update(b"\0");
    mac.update(user_id.as_bytes());
    match hex::decode(given) {
        Ok(bytes) => mac.verify_truncated_left(&bytes).is_ok() && bytes.len() == 20,
        Err(_) => false,
    }
}

/// The plugin's HTML reduced to what may join the layout.
pub fn sanitize(html: &str) -> String {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    let cleaner = CLEANER.get_or_init(|| {
        let mut b = ammonia::Builder::default();
        b.add_tags([
            "form", "input", "button", "select", "option", "optgroup", "textarea", "label",
            "fieldset", "legend", "details", "summary", "section", "article", "header", "footer",
            "time", "output", "progress", "meter", "mark", "caption", "colgroup", "col",
        ])
        .add_generic_attributes(["class", "id", "title", "role", "hidden", "lang"])
        .add_generic_attribute_prefixes(["aria-"])
        .add_tag_attributes("form", ["action", "method"])
        .add_tag_attributes(
            "input",
            [
                "type",
                "name",
                "value",
                "placeholder",
                "required",
                "checked",
                "disabled",
                "min",
                "max",
                "step",
                "pattern",
                "maxlength",
                "minlength",
                "size",
                "readonly",
                "autocomplete",
                "spellcheck",
                "list",
            ],
        )
        .add_tag_attributes(
            "button",
            [
                "type",
                "name",
                "value",
                "disabled",
                "formaction",
                "formmethod",
            ],
        )
        .add_tag_attributes(
            "textarea",
            [
                "name",
                "rows",
                "cols",
                "placeholder",
                "required",
                "readonly",
                "spellcheck",
                "maxlength",
                "wrap",
            ],
        )
        .add_tag_attributes("select", ["name", "multiple", "required", "disabled"])
        .add_tag_attributes("option", ["value", "selected", "disabled"])
        .add_tag_attributes("label", ["for"])
        .add_tag_attributes("details", ["open"])
        .add_tag_attributes("time", ["datetime"])
        .add_tag_attributes("progress", ["value", "max"])
        .add_tag_attributes("meter", ["value", "min", "max", "low", "high", "optimum"])
        .add_tag_attributes("th", ["scope"])
        // The host script's hooks a page may use, and nothing else of it.
        .add_generic_attributes(["data-compose-output", "data-compose-status", "data-confirm"])
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer"))
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            // Ids of their own: the layout's (`main`, `live`) stay unique.
            (_, "id") | ("label", "for") => Some(format!("pl-{value}").into()),
            // No password fields: a page must not look like a sign-in.
            ("input", "type") if value.eq_ignore_ascii_case("password") => Some("text".into()),
            // The session's token is the host's alone.
            (_, "name") if value == "csrf" || value == TOKEN_FIELD => Some("x-csrf".into()),
            _ => Some(value.into()),
        });
        b
    });
    cleaner.clean(html).to_string()
}

/// `html` with a hidden token field in every form.
fn with_tokens(html: &str, token: &str) -> String {
    let field = format!(r#"<input type="hidden" name="{TOKEN_FIELD}" value="{token}">"#);
    let mut out = String::with_capacity(html.len() + 64);
    let mut rest = html;
    while let Some(i) = rest.find("<form") {
        let Some(end) = rest[i..].find('>') else {
            break;
        };
        out.push_str(&rest[..i + end + 1]);
        out.push_str(&field);
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The page's policy: the host's own script and styles only, images only
/// from its assets, forms only to the plugin's pages (and sign-out).
fn policy(origin: Option<&str>, plugin: &str) -> String {
    match origin {
        Some(o) => format!(
            "default-src 'none'; script-src {o}{js}; style-src {o}{css}; img-src {o}/assets/ data:; \
             connect-src 'self'; form-action {o}/p/{plugin}/ {o}/logout; frame-ancestors 'none'; \
             base-uri 'none'",
            js = assets::JS.url,
            css = assets::CSS.url,
        ),
        // No Host header: the same, with the origin left to 'self' (forms
        // then may reach the whole origin, but carry only this token).
        None => "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            .to_string(),
    }
}

fn origin_of(parts: &axum::http::request::Parts) -> Option<String> {
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    if host.is_empty() || host.contains(['/', ' ', ';', '\'', ',']) {
        return None;
    }
    let tls = parts
        .extensions
        .get::<crate::http::client_ip::ViaTls>()
        .is_some_and(|t| t.0);
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

#[derive(Template)]
#[template(path = "plugin_page.html")]
struct PluginPage<'a> {
    ctx: Ctx,
    plugin: &'a str,
    title: &'a str,
    content: &'a str,
    /// The live stream's address, on a live page ([`super::plugin_live`]).
    live: Option<String>,
}

/// `GET|POST /p/{plugin}` and `/p/{plugin}/{*rest}`.
pub async fn serve(State(state): State<AppState>, req: Request) -> Response {
    match serve_inner(&state, req).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn serve_inner(state: &AppState, req: Request) -> Result<Response, Response> {
    let (mut parts, body) = req.into_parts();
    let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(&mut parts, state)
        .await
        .map_err(|_| {
            UiError::new(StatusCode::NOT_FOUND, "There is no page at this address.").into_response()
        })?;
    let plugin = params
        .iter()
        .find(|(k, _)| k == "plugin")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let rest = params
        .iter()
        .find(|(k, _)| k == "rest")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let base = format!("/p/{plugin}");
    let post = parts.method == Method::POST;
    if !post && parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(UiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Plugin pages take GET and POST.",
        )
        .into_response());
    }
    // Who: the session (a page is never called with a bearer token).
    let user = match crate::auth::identify(&parts, state).await {
        Ok((user, true)) => UiUser::of(&parts, user, state),
        Ok((_, false)) => {
            return Err(UiError::new(
                StatusCode::BAD_REQUEST,
                "Plugin pages are for the browser; call the plugin's API under /api/v1/plugins/ instead.",
            )
            .into_response())
        }
        Err(e) => return Err(super::page::refusal(&parts, e)),
    };
    let body = if post {
        let limit = state.config.security.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            UiError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form was too large.").into_response()
        })?;
        let token = form::urlencoded::parse(&bytes)
            .find(|(k, _)| k == TOKEN_FIELD)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !token_matches(&plugin, &user.user.id, &token) {
            let mut e = user.user.audit_entry("plugin.page", &plugin);
            e.result = "denied".into();
            e.detail = Some(format!(
                "a form post to {base}/{rest} without this page's token"
            ));
            state.audit(e).await;
            return Err(user
                .fail(
                    "",
                    crate::error::ApiError::Forbidden(
                        "the form's token is missing or belongs to another page: reload the page and try again"
                            .into(),
                    ),
                )
                .into_response());
        }
        bytes
    } else {
        Bytes::new()
    };
    let mut headers = request_headers(&parts.headers);
    headers.push(("x-wakedock-page".into(), base.clone()));
    let request = HttpRequest {
        method: parts.method.as_str().to_string(),
        path: format!("/{rest}"),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
    };
    let answer = call_plugin(state, &plugin, &user.user, request)
        .await
        .map_err(|e| user.fail("", e).into_response())?;
    let header_of = |name: &str| {
        answer
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if status.is_redirection() {
        // Only to the plugin's own pages.
        let to = header_of("location").unwrap_or("");
        let to = if to == base
            || to.starts_with(&format!("{base}/"))
            || to.starts_with(&format!("{base}?"))
        {
            page::local(Some(to), &base)
        } else {
            format!("{base}/")
        };
        return Ok(match header_of("x-wakedock-flash") {
            Some(f) => {
                let (ok, text) = match f.split_once(' ') {
                    Some(("error", t)) => (false, t),
                    Some((_, t)) => (true, t),
                    None => (true, f),
                };
                page::redirect_with(&to, ok, text.chars().take(300).collect::<String>())
            }
            None => Redirect::to(&to).into_response(),
        });
    }
    let ct = header_of("content-type").unwrap_or("").to_ascii_lowercase();
    if !ct.starts_with("text/html") {
        // Data the page links to (a download): inert, like the API's.
        let mut out = (status, answer.body).into_response();
        for (k, v) in &answer.headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                if passes_through(&k) {
                    out.headers_mut().insert(k, v);
                }
            }
        }
        crate::api::plugins::inert(out.headers_mut());
        return Ok(out);
    }
    let html = String::from_utf8_lossy(&answer.body);
    let content = with_tokens(&sanitize(&html), &form_token(&plugin, &user.user.id));
    let title: String = header_of("x-wakedock-title")
        .unwrap_or(&plugin)
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let mut ctx = user.ctx("");
    ctx.plugin = plugin.clone();
    // A page shown by a GET can be fetched again as it is; a form's answer
    // (errors at its fields) could not, so it stays as it was served.
    let page_path = format!("/{rest}");
    let live = (!post && status.is_success())
        .then(|| super::plugin_live::live_entry(state, &plugin, &page_path, user.user.role).ok())
        .flatten()
        .map(|_| super::plugin_live::stream_url(&plugin, &page_path));
    let mut res = page::page(
        &user,
        PluginPage {
            ctx,
            plugin: &plugin,
            title: &title,
            content: &content,
            live,
        },
    );
    *res.status_mut() = status;
    let csp = policy(origin_of(&parts).as_deref(), &plugin);
    if let Ok(v) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(res)
}

/// `form_urlencoded` without another dependency: url's re-export.
mod form {
    pub use url::form_urlencoded as urlencoded;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_its_content_and_loses_every_way_to_act() {
        let dirty = r#"<h1 id="main">Stacks</h1>
<script>fetch('/api/v1/users')</script>
<img src="x" onerror="alert(1)">
<a href="javascript:alert(1)">x</a>
<meta http-equiv="refresh" content="0;url=/api/v1/users">
<iframe src="/users"></iframe><object data="/x"></object><base href="//evil.example/">
<style>body{display:none}</style><p style="color:red">styled</p>
<form method="post" action="/p/example/save"><input name="csrf" value="stolen"><input type="password" name="pw">
<textarea name="compose">services: {}</textarea><button data-confirm="Sure?" onclick="x()">Save</button></form>
<pre data-compose-output="web" data-wake="1">live</pre>"#;
        let clean = sanitize(dirty);
        for gone in [
            "<script",
            "onerror",
            "javascript:",
            "<meta",
            "<iframe",
            "<object",
            "<base",
            "<style",
            "style=",
            "onclick",
            "data-wake",
            "name=\"csrf\"",
            "type=\"password\"",
        ] {
            assert!(!clean.contains(gone), "{gone} survived: {clean}");
        }
        for kept in [
            "<h1 id=\"pl-main\">Stacks</h1>",
            "<form method=\"post\" action=\"/p/example/save\">",
            "<textarea name=\"compose\">services: {}</textarea>",
            "data-confirm=\"Sure?\"",
            "data-compose-output=\"web\"",
        ] {
            assert!(clean.contains(kept), "{kept} lost: {clean}");
        }
        let with = with_tokens(&clean, "t0k");
        assert!(with.contains(
            r#"action="/p/example/save"><input type="hidden" name="wd_token" value="t0k">"#
        ));
    }

    #[test]
    fn tokens_belong_to_one_plugin_and_one_user() {
        let t = form_token("stacks", "u1");
        assert!(token_matches("stacks", "u1", &t));
        assert!(!token_matches("example", "u1", &t));
        assert!(!token_matches("stacks", "u2", &t));
        assert!(!token_matches("stacks", "u1", ""));
        assert!(!token_matches("stacks", "u1", &t[..10]));
    }

    #[test]
    fn the_policy_allows_the_hosts_files_and_the_plugins_own_forms_only() {
        let p = policy(Some("http://127.0.0.1:8000"), "stacks");
        assert!(p.contains("default-src 'none'"));
        assert!(p.contains(&format!(
            "script-src http://127.0.0.1:8000{};",
            assets::JS.url
        )));
        assert!(
            p.contains("form-action http://127.0.0.1:8000/p/stacks/ http://127.0.0.1:8000/logout;")
        );
        assert!(!p.contains("unsafe"));
    }
}
