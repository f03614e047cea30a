//! The HTTP API, version 1. Routes and the OpenAPI document are built from
//! the same handler annotations (utoipa-axum), so they cannot drift apart.

pub mod audit;
pub mod auth;
pub mod backups;
pub mod compose;
pub mod containers;
pub mod health;
pub mod plugins;
pub mod routes;
pub mod services;
pub mod users;
pub mod wake;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "WakeDock API", description = "Manage Docker containers; wake idle ones on request."),
    modifiers(&BearerAuth),
    components(schemas(containers::Action)),
    tags(
        (name = "system", description = "Health and metrics"),
        (name = "auth", description = "Sessions and tokens"),
        (name = "containers", description = "Docker containers"),
        (name = "users", description = "User management (admin)"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "backups", description = "Backups: list, take, download (admin)"),
        (name = "plugins", description = "WebAssembly plugins (admin) and their routes"),
        (name = "wake", description = "Wake-on-request API for the Caddy bridge (bridge token)"),
        (name = "services", description = "Wake-on-request services: definitions, state, manual wake and sleep"),
        (name = "routes", description = "Caddy sites generated from container labels (wakedock.host)"),
        (name = "stacks", description = "Compose stacks: the live output of their actions (the stacks plugin's own routes are under /api/v1/plugins/stacks/, see docs/stacks-api.md)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "metrics",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`security.metrics_token`, when it is set"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bridge",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The API routes under `/api/v1` plus the OpenAPI description of them.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(auth::me))
        .routes(routes!(containers::list))
        .routes(routes!(containers::inspect, containers::remove))
        .routes(routes!(containers::act))
        .routes(routes!(containers::logs))
        .routes(routes!(containers::stats))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(audit::list))
        .routes(routes!(backups::list, backups::create))
        .routes(routes!(backups::download))
        .routes(routes!(wake::subscribe))
        .routes(routes!(wake::wake))
        .routes(routes!(wake::activity))
        .routes(routes!(services::list, services::create))
        .routes(routes!(services::get, services::update, services::delete))
        .routes(routes!(services::wake))
        .routes(routes!(services::sleep))
        .routes(routes!(wake::page))
        .routes(routes!(wake::events))
        .routes(routes!(routes::list))
        .routes(routes!(routes::subscribe))
        .routes(routes!(compose::output))
        .routes(routes!(plugins::list))
        .routes(routes!(plugins::get, plugins::update, plugins::remove))
        .merge(
            // Packages carry a component: allow bodies up to 64 MiB here only.
            OpenApiRouter::new()
                .routes(routes!(plugins::install))
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::http::limits::UPLOAD_LIMIT,
                )),
        )
}

/// The plugins' own routes: any method, any path below the plugin's name.
pub fn plugin_routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/api/v1/plugins/{name}/{*path}",
        axum::routing::any(plugins::plugin_http),
    )
}

/// Routes outside `/api` (no API rate limit): health and metrics.
pub fn system_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The services and wake APIs are typed in the OpenAPI document,
    /// request and response, down to a member's status.
    #[test]
    fn wake_and_services_schemas_are_typed() {
        let (_, doc) = api_routes().split_for_parts();
        let v = serde_json::to_value(&doc).unwrap();
        let schemas = &v["components"]["schemas"];
        for name in [
            "ServiceList",
            "ServiceView",
            "ServiceDefinition",
            "ServiceState",
            "MemberView",
            "MemberStatus",
            "MemberPhase",
            "ServiceDef",
            "Woken",
            "Slept",
            "ActivityReport",
            "Snapshot",
            "ValidationError",
        ] {
            assert!(schemas.get(name).is_some(), "schema {name} missing");
        }
        let body = |path: &str, method: &str, status: &str| {
            v["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
                ["$ref"]
                .as_str()
                .map(str::to_owned)
        };
        let r = |name: &str| Some(format!("#/components/schemas/{name}"));
        assert_eq!(body("/api/v1/services", "get", "200"), r("ServiceList"));
        assert_eq!(
            body("/api/v1/services/{name}", "get", "200"),
            r("ServiceView")
        );
        assert_eq!(body("/api/v1/services", "post", "201"), r("ServiceDef"));
        assert_eq!(
            body("/api/v1/services/{name}/wake", "post", "200"),
            r("Woken")
        );
        assert_eq!(
            body("/api/v1/services/{name}/sleep", "post", "200"),
            r("Slept")
        );
        assert_eq!(body("/api/v1/wake/{service}", "post", "200"), r("Woken"));
        let req = &v["paths"]["/api/v1/services"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["$ref"];
        assert_eq!(req.as_str(), r("ServiceDef").as_deref());
    }
}
