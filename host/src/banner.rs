//! The start banner `wakedock serve` prints on standard output once it
//! listens: where to open it and who to sign in as, with the generated
//! password on the first start (the only place it is ever shown).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::server::FirstAdmin;

/// The address a browser on this machine opens for `addr`: loopback for an
/// unspecified (all interfaces) address, brackets around IPv6.
pub fn url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        IpAddr::V4(ip) => format!("http://{ip}:{}/", addr.port()),
        IpAddr::V6(ip) => format!("http://[{ip}]:{}/", addr.port()),
    }
}

/// The banner text (plain, no colour: it may go to a file).
pub fn render(addr: SocketAddr, admin: &FirstAdmin) -> String {
    let mut lines = vec![format!("WakeDock is running at {}", url(addr))];
    if addr.ip().is_unspecified() {
        lines.push(format!(
            "  (listening on every interface, port {})",
            addr.port()
        ));
    }
    match admin {
        FirstAdmin::Generated(password) => {
            lines.push(format!("  Sign in as:  {}", crate::server::FIRST_ADMIN));
            lines.push(format!("  Password:    {password}"));
            lines.push(
                "  This generated password is shown only this once: sign in and change it.".into(),
            );
        }
        FirstAdmin::FromEnv => {
            lines.push(format!("  Sign in as:  {}", crate::server::FIRST_ADMIN));
            lines.push("  Password:    the one in WAKEDOCK_ADMIN_PASSWORD".into());
        }
        FirstAdmin::Existing(Some(name)) => {
            lines.push(format!("  Admin user:  {name}"));
            lines.push(format!(
                "  Forgot the password? wakedock user passwd --username {name} --password-stdin"
            ));
        }
        FirstAdmin::Existing(None) => {
            lines.push("  No active admin: create one with".into());
            lines.push("  wakedock user add --username NAME --role admin --password-stdin".into());
        }
    }
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let rule = "=".repeat(width);
    format!("{rule}\n{}\n{rule}\n", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_one_a_browser_here_can_open() {
        assert_eq!(
            url("127.0.0.1:8000".parse().unwrap()),
            "http://127.0.0.1:8000/"
        );
        assert_eq!(url("0.0.0.0:80".parse().unwrap()), "http://127.0.0.1:80/");
        assert_eq!(url("[::]:8000".parse().unwrap()), "http://[::1]:8000/");
        assert_eq!(
            url("[fd00::1]:8000".parse().unwrap()),
            "http://[fd00::1]:8000/"
        );
    }

    #[test]
    fn first_start_shows_the_password_later_starts_the_admin() {
        let addr = "127.0.0.1:8000".parse().unwrap();
        let first = render(addr, &FirstAdmin::Generated("s3cret-pw".into()));
        assert!(first.contains("http://127.0.0.1:8000/"), "{first}");
        assert!(first.contains("Sign in as:  admin"), "{first}");
        assert!(first.contains("Password:    s3cret-pw"), "{first}");
        let later = render(addr, &FirstAdmin::Existing(Some("ops".into())));
        assert!(later.contains("Admin user:  ops"), "{later}");
        assert!(!later.contains("Password:"), "{later}");
        let all = render("0.0.0.0:9000".parse().unwrap(), &FirstAdmin::FromEnv);
        assert!(all.contains("every interface"), "{all}");
        assert!(!all.contains('\x1b'), "no colour codes");
    }
}
