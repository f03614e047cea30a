//! `/api/v1/users`: user management (admin only). There is no open
//! registration: only admins create users.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::{password, AuthUser};
use crate::db::users::{self, Role, User, UserChanges};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub username: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<Role>,
    /// A new password; signs the user out everywhere.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
    /// False deactivates the account and signs it out everywhere.
    pub active: Option<bool>,
}

/// Usernames: 1–64 of letters, digits, `_`, `.`, `-`, starting alphanumeric.
pub fn validate_username(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "username {name:?} is invalid: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ))
    }
}

/// All users.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = [User]), (status = 403, body = Problem)),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<User>>> {
    user.require(Role::Admin)?;
    Ok(Json(state.db.run(users::list).await?))
}

/// Creates a user.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, body = User),
        (status = 400, body = Problem),
        (status = 409, description = "Username taken", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    user.require_audited(&state, Role::Admin, "user.create", &req.username)
        .await?;
    validate_username(&req.username).map_err(ApiError::validation)?;
    password::validate(&req.password).map_err(ApiError::validation)?;
    let pw = req.password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let name = req.username.clone();
    let role = req.role;
    let created = state
        .db
        .run(move |c| {
            if users::by_username(c, &name)?.is_some() {
                return Ok(None);
            }
            users::insert(c, &name, &hash, role).map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("username {:?} is taken", req.username)))?;
    let mut e = user.audit_entry("user.create", &created.username);
    e.detail = Some(format!("role {}", created.role.as_str()));
    state.audit(e).await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A guarded change that was not made, in API terms.
fn refused(r: users::Refusal) -> ApiError {
    match r {
        users::Refusal::NotFound => ApiError::NotFound("no such user".into()),
        users::Refusal::LastAdmin => {
            ApiError::Conflict("this is the last active admin: promote another user first".into())
        }
    }
}

fn parse_id(id: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ApiError::bad_request("invalid_path", format!("{id:?} is not a user id")))
}

/// One user.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id", format = Uuid)),
    responses((status = 200, body = User), (status = 404, body = Problem)),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    user.require(Role::Admin)?;
    parse_id(&id)?;
    let row = state.db.run(move |c| users::by_id(c, &id)).await?;
    Ok(Json(
        row.ok_or_else(|| ApiError::NotFound("no such user".into()))?
            .to_user()?,
    ))
}

/// Changes role, password or active flag.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id", format = Uuid)),
    request_body = UpdateUser,
    responses(
        (status = 200, body = User),
        (status = 404, body = Problem),
        (status = 409, description = "Would leave no active admin", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<UpdateUser>,
) -> ApiResult<Json<User>> {
    user.require_audited(&state, Role::Admin, "user.update", &id)
        .await?;
    parse_id(&id)?;
    if req.role.is_none() && req.password.is_none() && req.active.is_none() {
        // Nothing to change: the user as it is (nothing written or audited).
        let row = state.db.run(move |c| users::by_id(c, &id)).await?;
        return Ok(Json(
            row.ok_or_else(|| ApiError::NotFound("no such user".into()))?
                .to_user()?,
        ));
    }
    let hash = match &req.password {
        Some(pw) => {
            password::validate(pw).map_err(ApiError::validation)?;
            let pw = pw.clone();
            Some(
                tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    let changes = UserChanges {
        role: req.role,
        password_hash: hash,
        active: req.active,
    };
    let uid = id.clone();
    let result = state
        .db
        .run(move |c| users::update_guarded(c, &uid, &changes))
        .await
        .map_err(ApiError::from)
        .and_then(|r| r.map_err(refused))
        .and_then(|row| Ok(row.to_user()?));
    let mut e = user.audit_entry("user.update", &id);
    // Every attempt is audited, a failed one (the database busy or down)
    // included.
    let updated = match result {
        Ok(u) => u,
        Err(err) => {
            e.result = "failure".into();
            e.detail = Some(err.to_string());
            state.audit(e).await;
            return Err(err);
        }
    };
    e.target = Some(updated.username.clone());
    e.detail = Some(
        [
            req.role.map(|r| format!("role={}", r.as_str())),
            req.password
                .as_ref()
                .map(|_| "password changed".to_string()),
            req.active.map(|a| format!("active={a}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", "),
    );
    state.audit(e).await;
    Ok(Json(updated))
}

/// Deletes a user and their sessions.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id", format = Uuid)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem),
        (status = 409, description = "Would leave no active admin", body = Problem),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    user.require_audited(&state, Role::Admin, "user.delete", &id)
        .await?;
    parse_id(&id)?;
    if id == user.id {
        return Err(ApiError::Conflict(
            "you cannot delete your own account".into(),
        ));
    }
    let uid = id.clone();
    let result = state
        .db
        .run(move |c| users::delete_guarded(c, &uid))
        .await
        .map_err(ApiError::from)
        .and_then(|r| r.map_err(refused))
        .map(|row| row.username);
    let mut e = user.audit_entry("user.delete", &id);
    match result {
        Ok(name) => {
            e.target = Some(name);
            state.audit(e).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(err) => {
            e.result = "failure".into();
            e.detail = Some(err.to_string());
            state.audit(e).await;
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a.b-c_d1").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username(".hidden").is_err());
        assert!(validate_username("with space").is_err());
        assert!(validate_username(&"x".repeat(65)).is_err());
    }
}
