//! Logging in, refreshing and logging out: the token lifecycle.

use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::password;
use crate::db::audit::NewAuditEntry;
use crate::db::users::{self, User};
use crate::db::{now_ms, tokens, DbError};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::state::AppState;

/// What a successful login or refresh returns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub token_type: &'static str,
    /// Send this in `X-CSRF-Token` on state-changing requests that
    /// authenticate with cookies.
    pub csrf_token: String,
    pub user: User,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Refresh tokens are stored only as hashes: a database leak does not hand
/// out sessions. They are high-entropy, so a plain SHA-256 is enough.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn issue(
    state: &AppState,
    user: User,
    token_version: i64,
    family: Option<String>,
    rotating: Option<String>,
) -> Result<Session, ApiError> {
    let refresh = random_token();
    let hash = hash_token(&refresh);
    let ttl_ms = state.config.security.refresh_token_ttl.get().as_millis() as i64;
    let user_id = user.id.clone();
    let rotated_ok = state
        .db
        .run(move |c| {
            c.write_transaction(|c| {
                let new = tokens::insert(c, &user_id, &hash, family.as_deref(), ttl_ms)?;
                if let Some(old) = rotating {
                    // Losing this race means another refresh used the same
                    // token first: refuse rather than fork the family.
                    if !tokens::mark_rotated(c, &old, &new.id)? {
                        return Err(DbError::Query(diesel::result::Error::RollbackTransaction));
                    }
                }
                Ok(())
            })
            .map(|()| true)
            .or_else(|e| match e {
                DbError::Query(diesel::result::Error::RollbackTransaction) => Ok(false),
                e => Err(e),
            })
        })
        .await?;
    if !rotated_ok {
        return Err(ApiError::Unauthorized("refresh token already used".into()));
    }
    let access = state
        .keys
        .issue(&user.id, &user.username, user.role, token_version)
        .map_err(ApiError::internal)?;
    Ok(Session {
        access_token: access,
        refresh_token: refresh,
        expires_in: state.keys.access_ttl.as_secs(),
        token_type: "Bearer",
        csrf_token: random_token(),
        user,
    })
}

/// Checks a username and password; audits success and failure.
pub async fn login(
    state: &AppState,
    username: &str,
    password_text: &str,
    ip: ClientIp,
) -> Result<Session, ApiError> {
    state.limits.check_login(ip.0, username).inspect_err(|_| {
        let mut e = NewAuditEntry::new("auth.login", "denied");
        e.actor = Some(username.to_string());
        e.client_ip = Some(ip.to_string());
        e.detail = Some("rate limited".into());
        state.audit_later(e);
    })?;
    let name = username.to_string();
    let row = state.db.run(move |c| users::by_username(c, &name)).await?;
    let pw = password_text.to_string();
    let (row, ok) = tokio::task::spawn_blocking(move || {
        // Verify against a dummy hash for unknown users: same timing.
        let hash = row
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_string());
        let ok = password::verify(&pw, &hash);
        (row, ok)
    })
    .await
    .map_err(ApiError::internal)?;
    let mut entry = NewAuditEntry::new("auth.login", "failure");
    entry.actor = Some(username.to_string());
    entry.client_ip = Some(ip.to_string());
    let row = match row {
        Some(r) if ok && r.active => r,
        Some(r) if ok && !r.active => {
            entry.detail = Some("account disabled".into());
            state.audit(entry).await;
            return Err(ApiError::Unauthorized("account is disabled".into()));
        }
        _ => {
            state.limits.login_failed(ip.0, username);
            entry.detail = Some("wrong username or password".into());
            state.audit(entry).await;
            return Err(ApiError::Unauthorized("wrong username or password".into()));
        }
    };
    state.limits.login_succeeded(ip.0, username);
    let session = issue(state, row.to_user()?, row.token_version, None, None).await?;
    entry.result = "success".into();
    state.audit(entry).await;
    Ok(session)
}

/// Trades a refresh token for a new pair; the old one stops working. A
/// token that was already rotated is a sign of theft: its whole family is
/// revoked.
pub async fn refresh(state: &AppState, token: &str, ip: ClientIp) -> Result<Session, ApiError> {
    let hash = hash_token(token);
    let row = state.db.run(move |c| tokens::by_hash(c, &hash)).await?;
    let row = row.ok_or_else(|| ApiError::Unauthorized("unknown refresh token".into()))?;
    if row.revoked_at.is_some() {
        let family = row.family_id.clone();
        let revoked = state
            .db
            .run(move |c| tokens::revoke_family(c, &family))
            .await?;
        if row.replaced_by.is_some() {
            let mut e = NewAuditEntry::new("auth.refresh", "denied");
            e.target = Some(row.user_id.clone());
            e.client_ip = Some(ip.to_string());
            e.detail = Some(format!(
                "reuse of a rotated refresh token; revoked {revoked} token(s) of its family"
            ));
            state.audit(e).await;
        }
        return Err(ApiError::Unauthorized("refresh token revoked".into()));
    }
    if row.expires_at <= now_ms() {
        return Err(ApiError::Unauthorized("refresh token expired".into()));
    }
    let uid = row.user_id.clone();
    let user_row = state
        .db
        .run(move |c| users::by_id(c, &uid))
        .await?
        .filter(|u| u.active)
        .ok_or_else(|| ApiError::Unauthorized("account is disabled or removed".into()))?;
    let user = user_row.to_user()?;
    issue(
        state,
        user,
        user_row.token_version,
        Some(row.family_id),
        Some(row.id),
    )
    .await
}

/// Revokes the refresh token (if it is one of ours) and audits.
pub async fn logout(state: &AppState, token: Option<&str>, actor: Option<String>, ip: ClientIp) {
    if let Some(token) = token {
        let hash = hash_token(token);
        let r = state
            .db
            .run(move |c| match tokens::by_hash(c, &hash)? {
                Some(row) => tokens::revoke(c, &row.id),
                None => Ok(()),
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "revoking refresh token at logout");
        }
    }
    let mut e = NewAuditEntry::new("auth.logout", "success");
    e.actor = actor;
    e.client_ip = Some(ip.to_string());
    state.audit(e).await;
}

/// Signs `user` out everywhere: every refresh token revoked and every
/// access token issued so far refused from now on. Audited.
pub async fn logout_everywhere(state: &AppState, user: &crate::auth::AuthUser) -> ApiResult<()> {
    let id = user.id.clone();
    let r = state
        .db
        .run(move |c| {
            c.write_transaction(|c| {
                tokens::revoke_user(c, &id)?;
                users::bump_token_version(c, &id)
            })
        })
        .await
        .map_err(ApiError::from);
    let mut e = user.audit_entry("auth.logout_all", &user.username);
    if let Err(err) = &r {
        e.result = "failure".into();
        e.detail = Some(err.to_string());
    }
    state.audit(e).await;
    r?;
    Ok(())
}

/// The cookies that carry a session to a browser. `secure` is set when the
/// request arrived over TLS (directly or via a trusted proxy).
pub fn cookies(state: &AppState, s: &Session, secure: bool) -> Vec<Cookie<'static>> {
    let access_age = state.keys.access_ttl.as_secs() as i64;
    let refresh_age = state.config.security.refresh_token_ttl.get().as_secs() as i64;
    let build = |name: &'static str, value: String, path: &'static str, age: i64, http_only| {
        Cookie::build((name, value))
            .path(path)
            .http_only(http_only)
            .secure(secure)
            .same_site(SameSite::Strict)
            .max_age(time_delta(age))
            .build()
    };
    vec![
        build(
            super::ACCESS_COOKIE,
            s.access_token.clone(),
            "/",
            access_age,
            true,
        ),
        build(
            super::REFRESH_COOKIE,
            s.refresh_token.clone(),
            "/api/v1/auth",
            refresh_age,
            true,
        ),
        // Readable by the page's script so it can echo it in X-CSRF-Token.
        build(
            super::CSRF_COOKIE,
            s.csrf_token.clone(),
            "/",
            refresh_age,
            false,
        ),
    ]
}

/// Cookies that delete the session cookies.
pub fn clearing_cookies() -> Vec<Cookie<'static>> {
    [
        (super::ACCESS_COOKIE, "/"),
        (super::REFRESH_COOKIE, "/api/v1/auth"),
        (super::CSRF_COOKIE, "/"),
    ]
    .into_iter()
    .map(|(name, path)| {
        Cookie::build((name, ""))
            .path(path)
            .max_age(time_delta(0))
            .build()
    })
    .collect()
}

fn time_delta(secs: i64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(secs)
}
