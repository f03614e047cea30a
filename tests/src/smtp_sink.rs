//! A loopback SMTP server for the e-mail channel's tests: Debian's
//! `python3-aiosmtpd` running `tests/smtp_sink.py`, with a throwaway CA
//! and server certificate made by `openssl` for this sink only. It offers
//! STARTTLS on one port and TLS from the first byte on another, requires a
//! login, and writes each message it accepts to a file the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The login the sink accepts.
pub const SMTP_USER: &str = "alerts@sink.test";

/// A running sink; stopped (and its files removed) when dropped.
pub struct SmtpSink {
    pub starttls_port: u16,
    pub tls_port: u16,
    pub password: String,
    /// The CA that signed the sink's certificate, for `ca_pem`.
    pub ca_pem: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct SunkMail {
    /// The RFC 5322 text as received.
    pub raw: String,
    /// `mode` (`starttls` or `tls`), `tls`, `login`, `mail_from`, `rcpt_tos`.
    pub meta: Value,
}

impl SunkMail {
    /// The value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The body after the headers.
    pub fn body(&self) -> String {
        self.raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("running openssl (scripts/install-deps.sh --test)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it (rustls
/// refuses a self-signed CA certificate used as the server's own).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=WakeDock test SMTP CA",
            "-keyout",
        ])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ])
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).unwrap();
        let (ca, cert, key) = certificates(dir.path());
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let (starttls_port, tls_port) = (crate::free_port(), crate::free_port());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        // Debian's interpreter, where python3-aiosmtpd lives (not a
        // virtualenv's or pyenv's `python3` first on PATH).
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(&mail_dir)
            .arg(&cert)
            .arg(&key)
            .arg(SMTP_USER)
            .arg(&password)
            .arg(starttls_port.to_string())
            .arg(tls_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "starting the SMTP sink (scripts/install-deps.sh --test installs python3-aiosmtpd)",
            );
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).ok();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("the SMTP sink did not start within 30 s")
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink failed to start");
        SmtpSink {
            starttls_port,
            tls_port,
            password,
            ca_pem: std::fs::read_to_string(ca).unwrap(),
            child,
            dir,
        }
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SunkMail> {
        let mut n = 1;
        let mut out = Vec::new();
        loop {
            let base = self.mail_dir().join(n.to_string());
            let (Ok(raw), Ok(meta)) = (
                std::fs::read_to_string(base.with_extension("eml")),
                std::fs::read_to_string(base.with_extension("json")),
            ) else {
                return out;
            };
            out.push(SunkMail {
                raw,
                meta: serde_json::from_str(&meta).unwrap(),
            });
            n += 1;
        }
    }

    /// Logins the sink refused so far.
    pub fn refused_logins(&self) -> usize {
        std::fs::read_to_string(self.mail_dir().join("refused.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Waits until `f` holds of the messages received.
    pub async fn wait(
        &self,
        limit: Duration,
        what: &str,
        f: impl Fn(&[SunkMail]) -> bool,
    ) -> Vec<SunkMail> {
        crate::eventually(limit, what, || {
            let m = self.messages();
            let ok = f(&m);
            async move { ok.then_some(m) }
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
