//! The client's address: the TCP peer, or, when the peer is a trusted
//! reverse proxy (Caddy on the same host, by default), the last untrusted
//! address in `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Stored in request extensions by [`resolve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl Default for ClientIp {
    fn default() -> Self {
        Self(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether the request reached us over TLS, as far as we can trust.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViaTls(pub bool);

fn from_headers(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> (IpAddr, bool) {
    if !trusted.contains(&peer) {
        return (peer, false);
    }
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    // Walk from the right: the nearest hop that is not one of our proxies
    // is the client. Anything further left could be forged by it.
    let ip = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer);
    (ip, tls)
}

/// Middleware that puts [`ClientIp`] and [`ViaTls`] into the request.
pub async fn resolve(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (ip, tls) = from_headers(peer, req.headers(), &state.config.security.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    req.extensions_mut().insert(ViaTls(tls));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let (ip, tls) = from_headers("127.0.0.1".parse().unwrap(), &h, &trusted);
        assert_eq!(ip.to_string(), "203.0.113.7");
        assert!(tls);
        let (ip, tls) = from_headers("198.51.100.1".parse().unwrap(), &h, &trusted);
        assert_eq!(ip.to_string(), "198.51.100.1");
        assert!(!tls);
    }
}
