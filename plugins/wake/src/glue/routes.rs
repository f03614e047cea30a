//! The internal HTTP routes the host calls (never a user: see
//! [`super::HOST_PERMISSION`]). Answers are the [`crate::contract`] types;
//! errors are [`ErrorBody`] with a typed code.
//!
//! - `POST /wake/{service}`, `POST /sleep/{service}?reason=` — operations;
//! - `POST /activity` — a bridge's batch;
//! - `GET /services`, `POST /services`, `PUT/DELETE /services/{name}`;
//! - `POST /resume` — the host started: every service's state.

use serde::Serialize;
use serde_json::json;
use wakedock_plugin_sdk::{clock, HttpRequest, HttpResponse};

use super::ops;
use super::scan::Scan;
use super::store::{
    api_defs, history, mark_dirty, put_api_defs, put_session, read_state, session_of,
};
use super::Wake;
use crate::contract::{
    ActivityReport, ErrorBody, ErrorCode, MemberView, OpReason, ServiceList, ServiceView,
    SessionView,
};
use crate::service::{parse_def, Service, Source, ValidationError};
use crate::session::Session;
use crate::state::{document, reconcile, Next};

/// A problem answer outside the contract's codes (the permission check).
pub fn problem(status: u16, code: &str, detail: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &json!({"status": status, "code": code, "detail": detail}),
    )
}

fn error(body: &ErrorBody) -> HttpResponse {
    HttpResponse::json(body.status, body)
}

fn fail(code: ErrorCode, detail: impl Into<String>) -> HttpResponse {
    error(&ErrorBody::new(code, detail))
}

fn answer<T: Serialize>(status: u16, r: Result<T, ErrorBody>) -> HttpResponse {
    match r {
        Ok(v) => HttpResponse::json(status, &v),
        Err(e) => error(&e),
    }
}

fn no_content() -> HttpResponse {
    HttpResponse {
        status: 204,
        headers: vec![],
        body: vec![],
    }
}

fn invalid(errors: Vec<ValidationError>) -> HttpResponse {
    let detail = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    error(&ErrorBody {
        errors,
        ..ErrorBody::new(ErrorCode::InvalidService, detail)
    })
}

impl Wake {
    pub(super) fn route(&mut self, req: HttpRequest) -> HttpResponse {
        let path = req.path.clone();
        let name_after = |prefix: &str| {
            path.strip_prefix(prefix)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        };
        match (req.method.as_str(), path.as_str()) {
            ("POST", "/activity") => self.activity(&req),
            ("POST", "/resume") => HttpResponse::json(200, &self.resume()),
            ("GET", "/services") => self.list(),
            ("POST", "/services") => self.put_service(&req, None),
            ("POST", _) if name_after("/wake/").is_some() => {
                let name = name_after("/wake/").expect("checked");
                answer(
                    200,
                    self.fresh_lookup(&name)
                        .and_then(|(s, scan)| ops::wake(&s, scan)),
                )
            }
            ("POST", _) if name_after("/sleep/").is_some() => {
                let name = name_after("/sleep/").expect("checked");
                let reason = match req.query_param("reason") {
                    None => OpReason::Manual,
                    Some(r) => match OpReason::parse(r) {
                        Some(r) => r,
                        None => {
                            return fail(ErrorCode::InvalidBody, format!("unknown reason \"{r}\""))
                        }
                    },
                };
                let own = self.self_container.clone();
                answer(
                    200,
                    self.fresh_lookup(&name)
                        .and_then(|(s, scan)| ops::sleep(&s, scan, reason, own.as_deref())),
                )
            }
            ("PUT", _) if name_after("/services/").is_some() => {
                self.put_service(&req, name_after("/services/").as_deref())
            }
            ("DELETE", _) if name_after("/services/").is_some() => {
                self.delete_service(&name_after("/services/").expect("checked"))
            }
            _ => HttpResponse::not_found(),
        }
    }

    /// A fresh listing and the service `name` in it (503 without Docker,
    /// 404 for an unknown name).
    fn fresh_lookup(&mut self, name: &str) -> Result<(Service, &Scan), ErrorBody> {
        let scan = self
            .scan_cached(true)
            .map_err(|e| ErrorBody::new(ErrorCode::DockerUnavailable, e))?;
        let s = scan.catalog.services.get(name).cloned().ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::UnknownService,
                format!("no service named \"{name}\""),
            )
        })?;
        Ok((s, scan))
    }

    fn activity(&mut self, req: &HttpRequest) -> HttpResponse {
        let body: ActivityReport = match req.json() {
            Ok(b) => b,
            Err(e) => return fail(ErrorCode::InvalidBody, e),
        };
        let scan = match self.scan_cached(false) {
            Ok(s) => s,
            Err(e) => return fail(ErrorCode::DockerUnavailable, e),
        };
        let now = clock::now_ms();
        for (name, c) in &body.services {
            let Some(s) = scan.catalog.services.get(name) else {
                continue;
            };
            let mut session = session_of(name).unwrap_or_else(|| Session::start(now, 0));
            session.record_activity(now, c.requests, c.open_connections, s.idle_timeout_ms);
            put_session(name, &session);
        }
        no_content()
    }

    /// Every service with its state, members, session and recent wakes.
    fn list(&mut self) -> HttpResponse {
        let scan = match self.scan_cached(true) {
            Ok(s) => s,
            Err(e) => return fail(ErrorCode::DockerUnavailable, e),
        };
        let now = clock::now_ms();
        let services = scan
            .catalog
            .services
            .values()
            .map(|s| {
                let members = scan.members(s);
                let stored = read_state(&s.name).doc(s);
                // Not published yet (a service defined a moment ago): what
                // the first observation will say.
                let state = stored.unwrap_or_else(|| {
                    let next = reconcile(s, None, &members)
                        .unwrap_or_else(|| Next::plain(crate::contract::StateName::Asleep));
                    document(s, next, 0, 0)
                });
                ServiceView {
                    service: s.definition(),
                    members: members
                        .iter()
                        .map(|(m, st)| MemberView {
                            name: m.clone(),
                            status: *st,
                            phase: state.member(m),
                        })
                        .collect(),
                    state,
                    session: session_of(&s.name).map(|x| SessionView {
                        expires_at_ms: x.expires_at_ms,
                        remaining_ms: x.remaining_ms(now),
                        last_activity_ms: x.last_activity_ms,
                        open_connections: x.open_connections,
                        requests: x.requests,
                        adopted: x.adopted,
                    }),
                    history: history(&s.name),
                }
            })
            .collect();
        HttpResponse::json(
            200,
            &ServiceList {
                services,
                errors: scan.catalog.errors.clone(),
                now_ms: now,
            },
        )
    }

    /// Create (`name = None`) or replace an API-defined service.
    fn put_service(&mut self, req: &HttpRequest, name: Option<&str>) -> HttpResponse {
        let value: serde_json::Value = match req.json() {
            Ok(v) => v,
            Err(e) => return fail(ErrorCode::InvalidBody, e),
        };
        let def = match parse_def(&value) {
            Ok(d) => d,
            Err(e) => return invalid(vec![e]),
        };
        if let Some(name) = name {
            if def.name != name {
                return invalid(vec![ValidationError {
                    service: def.name.clone(),
                    field: "name".into(),
                    message: format!(
                        "does not match the URL's \"{name}\" (rename by delete and create)"
                    ),
                }]);
            }
        }
        if let Err(errs) = def.validate(Source::Api) {
            return invalid(errs);
        }
        if self.config_defs.iter().any(|d| d.name == def.name) {
            return fail(
                ErrorCode::DefinedInConfig,
                format!(
                    "service \"{}\" is defined in the config file, which takes precedence; edit it there",
                    def.name
                ),
            );
        }
        let mut api = match api_defs() {
            Ok(api) => api,
            Err(e) => return fail(ErrorCode::StorageUnavailable, e.describe()),
        };
        // Redefining a service whose stored entry this version cannot read
        // replaces that entry.
        let unreadable = api.forget_unreadable(&def.name);
        let defs = &mut api.defs;
        let existing = defs.iter().position(|d| d.name == def.name);
        match (name, existing) {
            (Some(_), None) if unreadable => defs.push(def.clone()),
            (None, Some(_)) => {
                return fail(
                    ErrorCode::ServiceExists,
                    format!("service \"{}\" already exists", def.name),
                )
            }
            (Some(n), None) => {
                return fail(
                    ErrorCode::UnknownService,
                    format!("no API-defined service named \"{n}\""),
                )
            }
            (_, Some(i)) => defs[i] = def.clone(),
            (None, None) => defs.push(def.clone()),
        }
        if let Err(e) = put_api_defs(&api) {
            return fail(ErrorCode::StorageUnavailable, e.describe());
        }
        mark_dirty();
        self.publish_definition(&def.name);
        HttpResponse::json(if name.is_none() { 201 } else { 200 }, &def)
    }

    fn delete_service(&mut self, name: &str) -> HttpResponse {
        let mut api = match api_defs() {
            Ok(api) => api,
            Err(e) => return fail(ErrorCode::StorageUnavailable, e.describe()),
        };
        let before = api.defs.len();
        api.defs.retain(|d| d.name != name);
        let unreadable = api.forget_unreadable(name);
        if api.defs.len() == before && !unreadable {
            return if self.config_defs.iter().any(|d| d.name == name) {
                fail(
                    ErrorCode::DefinedInConfig,
                    format!("service \"{name}\" is defined in the config file; remove it there"),
                )
            } else {
                fail(
                    ErrorCode::UnknownService,
                    format!("no API-defined service named \"{name}\" (services defined by labels go away with their labels)"),
                )
            };
        }
        if let Err(e) = put_api_defs(&api) {
            return fail(ErrorCode::StorageUnavailable, e.describe());
        }
        mark_dirty();
        self.publish_definition(name);
        no_content()
    }
}
