//! The HTTP layer: `app(state)` builds the whole router with its middleware,
//! separate from any socket so tests can drive it directly.

pub mod client_ip;
pub mod extract;
pub mod limits;
pub mod openapi;
pub mod security;
pub mod sse;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::middleware;
use axum::response::IntoResponse;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::api;
use crate::error::ApiError;
use crate::state::AppState;

async fn not_found(req: axum::extract::Request) -> axum::response::Response {
    if crate::ui::wants_html(&req) {
        return crate::ui::not_found_page();
    }
    ApiError::NotFound("no such route".into()).into_response()
}

pub fn app(state: AppState) -> Router {
    let (api_router, _) = api::api_routes().split_for_parts();
    let (system_router, _) = api::system_routes().split_for_parts();
    let doc = std::sync::Arc::new(openapi::document());
    let api_router = api_router
        .merge(api::plugin_routes())
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()).into_response() }
            }),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::api_rate_limit,
        ));

    let cors = cors_layer(&state.config.security.cors_origins);
    Router::new()
        .merge(api_router)
        .merge(system_router)
        .merge(crate::ui::routes().layer(middleware::from_fn_with_state(
            state.clone(),
            crate::ui::rate_limit,
        )))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not accept that method".into())
        })
        .layer(DefaultBodyLimit::max(state.config.security.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::declared_length,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(middleware::from_fn(security::headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            client_ip::resolve,
        ))
        .layer(cors)
        // gzip for clients that ask (browsers do): pages and JSON lists
        // shrink several times. The default predicate leaves event streams,
        // images and small bodies alone; backup downloads are gzip already.
        .layer(
            tower_http::compression::CompressionLayer::new().compress_when(
                tower_http::compression::Predicate::and(
                    tower_http::compression::DefaultPredicate::new(),
                    tower_http::compression::predicate::NotForContentType::new("application/gzip"),
                ),
            ),
        )
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static(crate::auth::CSRF_HEADER),
        ])
}
