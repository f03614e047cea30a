//! `/routes`: the Caddy sites generated from `wakedock.host` labels, with
//! conflicts (a host claimed twice) and label errors shown first.

use askama::Template;
use axum::extract::State;

use crate::api::routes::{self as api, Routes};
use crate::state::AppState;

use super::page::{self, Ctx, UiResult, UiUser};

#[derive(Template)]
#[template(path = "routes.html")]
pub struct RoutesPage {
    pub ctx: Ctx,
    pub r: Routes,
}

pub async fn list(State(state): State<AppState>, u: UiUser) -> UiResult {
    let r = api::list(State(state), u.user.clone())
        .await
        .map_err(|e| u.fail("routes", e))?
        .0;
    Ok(page::page(
        &u,
        RoutesPage {
            ctx: u.ctx("routes"),
            r,
        },
    ))
}
