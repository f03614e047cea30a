//! Routes from container labels: `wakedock.host` (one or more host names)
//! and `wakedock.port` (the container port) give a container a site in
//! Caddy, with no Caddyfile to edit. The host reads these from every
//! container (stopped ones too: a sleeping service keeps its route) and
//! streams the resolved table to the Caddy bridge.
//!
//! Pure, like the other policy modules: containers in, routes plus
//! conflicts and errors out. Errors are [`ValidationError`]s worded like the
//! service labels' (`service "blog": wakedock.port: container "blog-1": ...`).
//!
//! Rules:
//! - The upstream is `<container name>:<wakedock.port>` (Docker's DNS on a
//!   network the container shares with Caddy), or `wakedock.upstream`
//!   (`host:port`) when Caddy reaches it another way.
//! - The route wakes the container's service: the one `wakedock.service`
//!   names, else the container's own name, when `wakedock.enable=true`; a
//!   container with `wakedock.service` but no `wakedock.enable` belongs to a
//!   service defined in the config file or API. Without either the route is
//!   a plain proxy (nothing to wake).
//! - Containers of the same service (or the same Compose service) claiming
//!   the same host are replicas: one route, several upstreams. Anyone else
//!   claiming a host that is taken is refused and reported as a conflict;
//!   the container that has had the host longest (created first) keeps it,
//!   so a new container never silently takes over a live site.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::service::{LabeledContainer, ValidationError, LABEL_PREFIX};

/// Host names of the route (comma-separated).
pub const HOST_LABEL: &str = "wakedock.host";
/// Container port the route proxies to.
pub const PORT_LABEL: &str = "wakedock.port";
/// `host:port` to proxy to instead of `<container name>:<port>`.
pub const UPSTREAM_LABEL: &str = "wakedock.upstream";

/// Labels Compose puts on the containers of one service.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// A container as the route table sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteContainer {
    /// Name and labels.
    pub container: LabeledContainer,
    /// Creation time (Unix seconds): who has a host longest.
    pub created: i64,
}

/// One generated site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Lowercase host name, no port.
    pub host: String,
    /// The service a request wakes; `None` for a plain proxy.
    pub service: Option<String>,
    /// `host:port` dial addresses, one per container.
    pub upstreams: Vec<String>,
    /// The containers behind it.
    pub containers: Vec<String>,
}

/// A host claimed by more than one owner; only `kept` has the route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteConflict {
    pub host: String,
    /// The container(s) that keep the route.
    pub kept: Vec<String>,
    /// The container whose claim was refused.
    pub refused: String,
    /// A sentence for the log, the UI and `/health`.
    pub message: String,
}

/// The resolved table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteSet {
    /// Sorted by host.
    pub routes: Vec<Route>,
    pub conflicts: Vec<RouteConflict>,
    /// Containers whose route labels are invalid (they get no route).
    pub errors: Vec<ValidationError>,
}

/// What one container's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    hosts: Vec<String>,
    service: Option<String>,
    upstream: String,
    /// Claims with the same owner are replicas of one route.
    owner: String,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Checks and normalises one host name (lowercase, no trailing dot).
pub fn parse_host(raw: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("\"{raw}\" is not a host name ({why}; write it like \"whoami.example.com\")")
    };
    let h = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() {
        return Err(bad("empty"));
    }
    if h.contains("://") || h.contains('/') || h.contains(':') {
        return Err(bad("no scheme, port or path"));
    }
    if h.contains('*') {
        return Err(bad("wildcards are not supported"));
    }
    if h.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    for label in h.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "each dot-separated part is 1-63 letters, digits or inner hyphens",
            ));
        }
    }
    Ok(h)
}

fn parse_port(v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("\"{}\" is not a port (1-65535)", v.trim())),
        Ok(p) => Ok(p),
    }
}

fn parse_upstream(v: &str) -> Result<String, String> {
    let v = v.trim();
    let bad = || format!("\"{v}\" is not an address (use \"host:port\", e.g. \"127.0.0.1:8080\")");
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || host.contains(' ') {
        return Err(bad());
    }
    parse_port(port).map_err(|_| bad())?;
    Ok(v.to_owned())
}

/// Reads one container's route labels; `None` when it has no `wakedock.host`.
fn claim_of(c: &LabeledContainer) -> Option<Result<Claim, Vec<ValidationError>>> {
    let raw_hosts = c.labels.get(HOST_LABEL)?;
    let explicit_service = c
        .labels
        .get("wakedock.service")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let service_for_errors = explicit_service.clone().unwrap_or_else(|| c.name.clone());
    let mut errs = Vec::new();
    let mut err = |field: &str, msg: String| {
        errs.push(ValidationError {
            service: service_for_errors.clone(),
            field: field.to_owned(),
            message: format!("container \"{}\": {msg}", c.name),
        })
    };

    let mut hosts = BTreeSet::new();
    for part in raw_hosts.split(',') {
        if part.trim().is_empty() && raw_hosts.contains(',') {
            continue;
        }
        match parse_host(part) {
            Ok(h) => {
                hosts.insert(h);
            }
            Err(m) => err(HOST_LABEL, m),
        }
    }

    let upstream = match (c.labels.get(UPSTREAM_LABEL), c.labels.get(PORT_LABEL)) {
        (Some(u), _) => parse_upstream(u).map_err(|m| err(UPSTREAM_LABEL, m)).ok(),
        (None, Some(p)) => parse_port(p)
            .map(|p| format!("{}:{p}", c.name))
            .map_err(|m| err(PORT_LABEL, m))
            .ok(),
        (None, None) => {
            err(
                PORT_LABEL,
                format!(
                    "{PORT_LABEL} is required with {HOST_LABEL} (the container port Caddy proxies to)"
                ),
            );
            None
        }
    };

    let service = match c.labels.get("wakedock.enable").map(|v| (v, parse_bool(v))) {
        Some((_, Some(true))) => Some(service_for_errors.clone()),
        Some((v, None)) => {
            err("wakedock.enable", format!("\"{v}\" is not true or false"));
            None
        }
        Some((_, Some(false))) | None => explicit_service.clone(),
    };

    if !errs.is_empty() {
        return Some(Err(errs));
    }
    let owner = match (
        &service,
        c.labels.get(COMPOSE_PROJECT),
        c.labels.get(COMPOSE_SERVICE),
    ) {
        (Some(s), _, _) => format!("service {s}"),
        (None, Some(p), Some(s)) => format!("compose {p}/{s}"),
        _ => format!("container {}", c.name),
    };
    Some(Ok(Claim {
        hosts: hosts.into_iter().collect(),
        service,
        upstream: upstream.unwrap_or_default(),
        owner,
    }))
}

fn describe(service: &Option<String>) -> String {
    match service {
        Some(s) => format!("service \"{s}\""),
        None => "no service".to_owned(),
    }
}

/// The route table for these containers.
pub fn routes_from_labels(containers: &[RouteContainer]) -> RouteSet {
    let mut out = RouteSet::default();
    // Oldest first: the first claim on a host keeps it.
    let mut sorted: Vec<&RouteContainer> = containers.iter().collect();
    sorted.sort_by(|a, b| (a.created, &a.container.name).cmp(&(b.created, &b.container.name)));
    // host → (owner, route)
    let mut taken: BTreeMap<String, (String, Route)> = BTreeMap::new();
    for rc in sorted {
        let c = &rc.container;
        let claim = match claim_of(c) {
            None => continue,
            Some(Err(errs)) => {
                out.errors.extend(errs);
                continue;
            }
            Some(Ok(claim)) => claim,
        };
        for host in &claim.hosts {
            match taken.get_mut(host) {
                None => {
                    taken.insert(
                        host.clone(),
                        (
                            claim.owner.clone(),
                            Route {
                                host: host.clone(),
                                service: claim.service.clone(),
                                upstreams: vec![claim.upstream.clone()],
                                containers: vec![c.name.clone()],
                            },
                        ),
                    );
                }
                Some((owner, route)) if *owner == claim.owner => {
                    if !route.upstreams.contains(&claim.upstream) {
                        route.upstreams.push(claim.upstream.clone());
                    }
                    route.containers.push(c.name.clone());
                }
                Some((_, route)) => {
                    let kept = route.containers.clone();
                    out.conflicts.push(RouteConflict {
                        host: host.clone(),
                        message: format!(
                            "host \"{host}\" of container \"{}\" ({}) is already the route of container \"{}\" ({}); \
                             the route stays with \"{}\" and \"{}\" gets none: give one of them another {LABEL_PREFIX}host",
                            c.name,
                            describe(&claim.service),
                            kept.join("\", \""),
                            describe(&route.service),
                            kept[0],
                            c.name,
                        ),
                        kept,
                        refused: c.name.clone(),
                    });
                }
            }
        }
    }
    out.routes = taken.into_values().map(|(_, r)| r).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(name: &str, created: i64, labels: &[(&str, &str)]) -> RouteContainer {
        RouteContainer {
            container: LabeledContainer::new(name, labels.iter().copied()),
            created,
        }
    }

    #[test]
    fn labelled_container_gets_a_route_to_its_name_and_port() {
        let set = routes_from_labels(&[rc(
            "whoami",
            1,
            &[
                ("wakedock.enable", "true"),
                ("wakedock.host", "Whoami.Example.com."),
                ("wakedock.port", "80"),
            ],
        )]);
        assert_eq!(
            set.routes,
            vec![Route {
                host: "whoami.example.com".into(),
                service: Some("whoami".into()),
                upstreams: vec!["whoami:80".into()],
                containers: vec!["whoami".into()],
            }]
        );
        assert!(set.conflicts.is_empty() && set.errors.is_empty());
    }

    #[test]
    fn service_comes_from_the_service_label_or_none() {
        let set = routes_from_labels(&[
            rc(
                "blog-1",
                1,
                &[
                    ("wakedock.enable", "true"),
                    ("wakedock.service", "blog"),
                    ("wakedock.host", "blog.example.com"),
                    ("wakedock.port", "8080"),
                ],
            ),
            // A member of a service defined in the config file.
            rc(
                "wiki",
                1,
                &[
                    ("wakedock.service", "docs"),
                    ("wakedock.host", "wiki.example.com"),
                    ("wakedock.port", "80"),
                ],
            ),
            // Nothing to wake: a plain proxy.
            rc(
                "ui",
                1,
                &[
                    ("wakedock.host", "ui.example.com"),
                    ("wakedock.upstream", "10.0.0.5:8000"),
                ],
            ),
        ]);
        let by_host: BTreeMap<_, _> = set.routes.iter().map(|r| (r.host.as_str(), r)).collect();
        assert_eq!(by_host["blog.example.com"].service.as_deref(), Some("blog"));
        assert_eq!(by_host["wiki.example.com"].service.as_deref(), Some("docs"));
        assert_eq!(by_host["ui.example.com"].service, None);
        assert_eq!(by_host["ui.example.com"].upstreams, vec!["10.0.0.5:8000"]);
    }

    #[test]
    fn several_hosts_on_one_container() {
        let set = routes_from_labels(&[rc(
            "app",
            1,
            &[
                ("wakedock.enable", "true"),
                ("wakedock.host", "a.example.com, b.example.com,"),
                ("wakedock.port", "80"),
            ],
        )]);
        let hosts: Vec<_> = set.routes.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(hosts, vec!["a.example.com", "b.example.com"]);
    }

    #[test]
    fn replicas_of_one_service_share_the_route() {
        let labels = [
            ("wakedock.enable", "true"),
            ("wakedock.service", "api"),
            ("wakedock.host", "api.example.com"),
            ("wakedock.port", "80"),
        ];
        let set = routes_from_labels(&[rc("api-2", 2, &labels), rc("api-1", 1, &labels)]);
        assert!(set.conflicts.is_empty(), "{:?}", set.conflicts);
        assert_eq!(set.routes.len(), 1);
        assert_eq!(set.routes[0].upstreams, vec!["api-1:80", "api-2:80"]);
    }

    #[test]
    fn compose_replicas_without_a_service_share_the_route() {
        let labels = [
            ("com.docker.compose.project", "shop"),
            ("com.docker.compose.service", "web"),
            ("wakedock.host", "shop.example.com"),
            ("wakedock.port", "80"),
        ];
        let set = routes_from_labels(&[rc("shop-web-1", 1, &labels), rc("shop-web-2", 1, &labels)]);
        assert!(set.conflicts.is_empty());
        assert_eq!(set.routes[0].upstreams.len(), 2);
    }

    #[test]
    fn same_host_twice_keeps_the_older_route_and_reports_the_newer() {
        let a = rc(
            "old",
            100,
            &[
                ("wakedock.enable", "true"),
                ("wakedock.host", "x.example.com"),
                ("wakedock.port", "80"),
            ],
        );
        let b = rc(
            "new",
            200,
            &[
                ("wakedock.enable", "true"),
                ("wakedock.host", "x.example.com"),
                ("wakedock.port", "80"),
            ],
        );
        // Whatever order the engine lists them in.
        for list in [vec![a.clone(), b.clone()], vec![b, a]] {
            let set = routes_from_labels(&list);
            assert_eq!(set.routes.len(), 1);
            assert_eq!(set.routes[0].containers, vec!["old"]);
            assert_eq!(set.conflicts.len(), 1);
            let c = &set.conflicts[0];
            assert_eq!(
                (c.kept.clone(), c.refused.as_str()),
                (vec!["old".to_string()], "new")
            );
            assert!(c.message.contains("\"x.example.com\""), "{}", c.message);
            assert!(c.message.contains("service \"old\""), "{}", c.message);
        }
    }

    #[test]
    fn bad_labels_are_reported_like_service_labels_and_get_no_route() {
        let set = routes_from_labels(&[
            rc(
                "a",
                1,
                &[
                    ("wakedock.enable", "true"),
                    ("wakedock.host", "https://a.example.com"),
                    ("wakedock.port", "80"),
                ],
            ),
            rc(
                "b",
                1,
                &[
                    ("wakedock.enable", "true"),
                    ("wakedock.host", "b.example.com"),
                ],
            ),
            rc(
                "c",
                1,
                &[
                    ("wakedock.enable", "yes please"),
                    ("wakedock.host", "c.example.com"),
                    ("wakedock.port", "99999"),
                ],
            ),
            rc(
                "d",
                1,
                &[
                    ("wakedock.host", "*.example.com"),
                    ("wakedock.upstream", "nope"),
                ],
            ),
        ]);
        assert!(set.routes.is_empty(), "{:?}", set.routes);
        let text: Vec<String> = set.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "service \"a\": wakedock.host: container \"a\": \"https://a.example.com\" is not a host name (no scheme, port or path; write it like \"whoami.example.com\")",
                "service \"b\": wakedock.port: container \"b\": wakedock.port is required with wakedock.host (the container port Caddy proxies to)",
                "service \"c\": wakedock.port: container \"c\": \"99999\" is not a port (1-65535)",
                "service \"c\": wakedock.enable: container \"c\": \"yes please\" is not true or false",
                "service \"d\": wakedock.host: container \"d\": \"*.example.com\" is not a host name (wildcards are not supported; write it like \"whoami.example.com\")",
                "service \"d\": wakedock.upstream: container \"d\": \"nope\" is not an address (use \"host:port\", e.g. \"127.0.0.1:8080\")",
            ]
        );
    }

    #[test]
    fn containers_without_a_host_label_are_not_routes() {
        let set = routes_from_labels(&[rc("plain", 1, &[("wakedock.enable", "true")])]);
        assert_eq!(set, RouteSet::default());
    }

    #[test]
    fn host_names() {
        for ok in ["localhost", "a.b", "x-1.example.com", "123.example"] {
            assert!(parse_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a..b", "-a.com", "a-.com", "a_b.com", "a.com:80", "a.com/x",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }
}
