//! The HTTP layer: `app(state)` builds the whole router with its middleware,
//! separate from any socket so tests can drive it directly.

pub mod client_ip;
pub mod extract;
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

/// The OpenAPI document of every route `app` serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api_doc) = api::api_routes().split_for_parts();
    let (_, sys_doc) = api::system_routes().split_for_parts();
    let mut doc = api_doc;
    doc.merge(sys_doc);
    add_plugin_route_doc(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The plugins' catch-all route is plain axum (its `{*path}` has no
/// OpenAPI equivalent); describe it by hand as `{path}`.
fn add_plugin_route_doc(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{
        HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
    };
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{Required, ResponseBuilder};
    let op = OperationBuilder::new()
        .tag("plugins")
        .summary(Some("A plugin's own route"))
        .description(Some(
            "Routed to the plugin's `handle-http` export with the path below the plugin's name \
             (it may contain slashes). Any signed-in user; the plugin sees the caller and role.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("name")
                .parameter_in(ParameterIn::Path)
                .required(Required::True),
        )
        .parameter(
            ParameterBuilder::new()
                .name("path")
                .parameter_in(ParameterIn::Path)
                .required(Required::True),
        )
        .response(
            "200",
            ResponseBuilder::new().description("The plugin's response"),
        )
        .response(
            "404",
            ResponseBuilder::new().description("No such plugin running"),
        )
        .response(
            "502",
            ResponseBuilder::new().description("The plugin failed"),
        )
        .response(
            "503",
            ResponseBuilder::new().description("The plugin is disabled or failing"),
        )
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
        .build();
    let item = PathItem::from_http_methods(
        [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Put,
            HttpMethod::Patch,
            HttpMethod::Delete,
        ],
        op,
    );
    doc.paths
        .paths
        .insert("/api/v1/plugins/{name}/{path}".into(), item);
}

async fn not_found(req: axum::extract::Request) -> axum::response::Response {
    if crate::ui::wants_html(&req) {
        return crate::ui::not_found_page();
    }
    ApiError::NotFound("no such route".into()).into_response()
}

pub fn app(state: AppState) -> Router {
    let (api_router, _) = api::api_routes().split_for_parts();
    let (system_router, _) = api::system_routes().split_for_parts();
    let doc = openapi();
    let api_router = api_router
        .merge(api::plugin_routes())
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc).into_response() }
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
        .merge(crate::ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("this route does not accept that method".into())
        })
        .layer(DefaultBodyLimit::max(state.config.security.max_body_bytes))
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
        // images and small bodies alone.
        .layer(tower_http::compression::CompressionLayer::new())
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
