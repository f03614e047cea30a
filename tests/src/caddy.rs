//! A real Caddy, built with our module by `scripts/build-caddy.sh`, run from
//! a generated Caddyfile on loopback ports. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, target_dir};

/// The Caddy binary with the `wakedock` module (`WD_CADDY_BIN` overrides).
pub fn caddy_bin() -> PathBuf {
    std::env::var_os("WD_CADDY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("caddy/caddy"))
}

/// One site of a test Caddyfile: `wakedock` for `service` in front of
/// `reverse_proxy` to `upstream`, on its own loopback port. An empty
/// `service` makes a plain `reverse_proxy` site (a benchmark's baseline).
#[derive(Debug, Clone)]
pub struct Site {
    pub service: String,
    pub upstream: String,
    /// Extra lines inside the `wakedock` block (e.g. `fail_mode open`).
    pub extra: Vec<String>,
}

pub struct Caddy {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` per site, in order.
    pub sites: Vec<String>,
    dir: tempfile::TempDir,
    host_url: String,
    token: String,
    spec: Vec<Site>,
    ports: Vec<u16>,
    /// Sites answer any `Host` (`http://:PORT`), for services named by a
    /// request placeholder such as `{labels.2}`.
    any_host: bool,
}

impl Caddy {
    /// Starts Caddy with `sites`, each bridged to the host at `host_url`
    /// with `token`; returns once every site port accepts connections.
    pub async fn start(host_url: &str, token: &str, sites: Vec<Site>) -> Caddy {
        Self::launch(host_url, token, sites, false).await
    }

    /// Like [`Caddy::start`], with sites that answer any `Host` header (a
    /// wildcard site): a `service` such as `{labels.2}` is then taken from
    /// the request's host name.
    pub async fn start_any_host(host_url: &str, token: &str, sites: Vec<Site>) -> Caddy {
        Self::launch(host_url, token, sites, true).await
    }

    async fn launch(host_url: &str, token: &str, sites: Vec<Site>, any_host: bool) -> Caddy {
        let ports: Vec<u16> = sites.iter().map(|_| free_port()).collect();
        let mut c = Caddy {
            child: None,
            sites: ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
            dir: tempfile::tempdir().expect("temp dir"),
            host_url: host_url.to_owned(),
            token: token.to_owned(),
            spec: sites,
            ports,
            any_host,
        };
        c.spawn().await;
        c
    }

    fn caddyfile(&self) -> String {
        let mut f = String::from(
            "{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tpersist_config off\n\tlog {\n\t\tlevel WARN\n\t}\n}\n",
        );
        let host = if self.any_host { "" } else { "127.0.0.1" };
        for (site, port) in self.spec.iter().zip(&self.ports) {
            if site.service.is_empty() {
                f.push_str(&format!(
                    "http://{host}:{port} {{\n\treverse_proxy {}\n}}\n",
                    site.upstream
                ));
                continue;
            }
            f.push_str(&format!(
                "http://{host}:{port} {{\n\twakedock {} {{\n\t\tservice {}\n\t\ttoken {{env.WD_TEST_BRIDGE_TOKEN}}\n",
                self.host_url, site.service
            ));
            for l in &site.extra {
                f.push_str(&format!("\t\t{l}\n"));
            }
            f.push_str(&format!("\t}}\n\treverse_proxy {}\n}}\n", site.upstream));
        }
        f
    }

    async fn spawn(&mut self) {
        let bin = caddy_bin();
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/build-caddy.sh",
            bin.display()
        );
        let file = self.dir.path().join("Caddyfile");
        std::fs::write(&file, self.caddyfile()).unwrap();
        let child = Command::new(&bin)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("WD_TEST_BRIDGE_TOKEN", &self.token)
            .env("XDG_DATA_HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start caddy");
        self.child = Some(child);
        for port in self.ports.clone() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "caddy did not listen on {port} within 15 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Points the bridge at another host URL (takes effect on restart).
    pub fn set_host(&mut self, host_url: &str) {
        self.host_url = host_url.to_owned();
    }

    /// Stops Caddy (SIGKILL) and starts it again on the same ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.kill();
    }
}
