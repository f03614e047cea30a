//! `/users` (admin): create users, change a role, reset a password,
//! deactivate or reactivate. The API's handlers do the work (last-admin
//! protection, sign-out on password change, audit).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::users::{self as api, CreateUser, UpdateUser};
use crate::db::users::{Role, User};
use crate::error::ApiError;
use crate::http::extract;
use crate::state::AppState;

use super::page::{self, Ctx, UiForm, UiResult, UiUser};

pub struct UserView {
    pub u: User,
    pub created: String,
}

/// The create form, with what was typed and a message next to each field.
#[derive(Debug, Default)]
pub struct CreateFormView {
    pub username: String,
    pub role: String,
    pub username_error: Option<String>,
    pub password_error: Option<String>,
    pub role_error: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct ListPage {
    pub ctx: Ctx,
    pub users: Vec<UserView>,
    pub form: CreateFormView,
    pub me: String,
}

async fn render(state: &AppState, u: &UiUser, form: CreateFormView) -> UiResult {
    let users = api::list(State(state.clone()), u.user.clone())
        .await
        .map_err(|e| u.fail("users", e))?
        .0;
    Ok(page::page(
        u,
        ListPage {
            ctx: u.ctx("users"),
            users: users
                .into_iter()
                .map(|u| UserView {
                    created: super::timestamp(u.created_at),
                    u,
                })
                .collect(),
            form,
            me: u.user.id.clone(),
        },
    ))
}

pub async fn list(State(state): State<AppState>, u: UiUser) -> UiResult {
    render(
        &state,
        &u,
        CreateFormView {
            role: "user".into(),
            ..Default::default()
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub role: String,
}

/// `POST /users`: a new user; problems are shown next to their field.
pub async fn create(State(state): State<AppState>, f: UiForm<CreateForm>) -> UiResult {
    let u = &f.user;
    let mut view = CreateFormView {
        username: f.form.username.trim().to_string(),
        role: f.form.role.clone(),
        ..Default::default()
    };
    let role: Role = match f.form.role.parse() {
        Ok(r) => r,
        Err(e) => {
            view.role_error = Some(page::describe(&ApiError::validation(e)));
            let mut res = render(&state, u, view).await?;
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        }
    };
    let r = api::create(
        State(state.clone()),
        u.user.clone(),
        extract::Json(CreateUser {
            username: view.username.clone(),
            password: f.form.password.clone(),
            role,
        }),
    )
    .await;
    match r {
        Ok((_, created)) => Ok(page::redirect_with(
            "/users",
            true,
            format!(
                "Created {} with the {} role.",
                created.0.username,
                created.0.role.as_str()
            ),
        )),
        Err(e @ ApiError::Forbidden(_)) => Err(u.fail("users", e)),
        Err(e) => {
            let msg = page::describe(&e);
            let lower = msg.to_lowercase();
            if lower.starts_with("password") {
                view.password_error = Some(msg);
            } else if lower.starts_with("username") {
                view.username_error = Some(msg);
            } else {
                view.error = Some(msg);
            }
            let mut res = render(&state, u, view).await?;
            *res.status_mut() = e.status();
            Ok(res)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct UserForm {
    pub role: Option<String>,
    pub password: Option<String>,
}

/// `POST /users/{id}/{role|password|deactivate|activate}`.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    f: UiForm<UserForm>,
) -> UiResult {
    let u = &f.user;
    let change = match action.as_str() {
        "role" => match f.form.role.as_deref().unwrap_or("").parse::<Role>() {
            Ok(r) => Ok(UpdateUser {
                role: Some(r),
                ..Default::default()
            }),
            Err(e) => Err(ApiError::validation(e)),
        },
        "password" => Ok(UpdateUser {
            password: Some(f.form.password.clone().unwrap_or_default()),
            ..Default::default()
        }),
        "deactivate" | "activate" => Ok(UpdateUser {
            active: Some(action == "activate"),
            ..Default::default()
        }),
        other => Err(ApiError::NotFound(format!(
            "there is no user action {other:?}"
        ))),
    };
    let r = match change {
        Ok(req) => {
            api::update(
                State(state),
                u.user.clone(),
                extract::Path(id),
                extract::Json(req),
            )
            .await
        }
        Err(e) => Err(e),
    };
    page::after(u, "users", "/users", r, |changed| {
        let who = &changed.0.username;
        match action.as_str() {
            "role" => format!("{who} now has the {} role.", changed.0.role.as_str()),
            "password" => format!("{who}'s password is reset; they are signed out everywhere."),
            "deactivate" => format!("{who} is deactivated and signed out."),
            _ => format!("{who} is active again."),
        }
    })
}
