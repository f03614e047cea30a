//! Running the real `docker compose` CLI: finding a version-2 binary,
//! building its command line for a project folder, and running it with a
//! clean environment (WakeDock's own variables, secrets among them, never
//! reach Compose's interpolation), output read line by line, bounded in
//! time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::OnceCell;

/// Where Docker's CLI looks for plugins, in its order.
const PLUGIN_DIRS: &[&str] = &[
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// A Compose v2 binary and its version.
#[derive(Debug, Clone)]
pub struct ComposeBinary {
    pub path: PathBuf,
    pub version: String,
}

/// Finds and remembers the Compose binary; runs it.
#[derive(Debug)]
pub struct Runner {
    configured: Option<PathBuf>,
    docker_host: String,
    found: OnceCell<ComposeBinary>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by a signal (no code).
    Signal,
    TimedOut,
}

impl Runner {
    pub fn new(configured: Option<PathBuf>, docker_socket: &Path) -> Runner {
        Runner {
            configured,
            docker_host: format!("unix://{}", docker_socket.display()),
            found: OnceCell::new(),
        }
    }

    /// The binary, found once: `stacks.compose_binary`, else the CLI-plugin
    /// folders (`~/.docker/cli-plugins` first), else `docker-compose` on
    /// `PATH`, each only if it reports version 2 (Debian's `docker-compose`
    /// package is the Python version 1).
    pub async fn binary(&self) -> Result<&ComposeBinary, String> {
        self.found
            .get_or_try_init(|| async {
                let mut tried = Vec::new();
                let candidates: Vec<PathBuf> = match &self.configured {
                    Some(p) => vec![p.clone()],
                    None => {
                        let mut c = Vec::new();
                        if let Some(home) = std::env::var_os("HOME") {
                            c.push(PathBuf::from(home).join(".docker/cli-plugins/docker-compose"));
                        }
                        c.extend(PLUGIN_DIRS.iter().map(|d| Path::new(d).join("docker-compose")));
                        if let Some(path) = std::env::var_os("PATH") {
                            c.extend(std::env::split_paths(&path).map(|d| d.join("docker-compose")));
                        }
                        c
                    }
                };
                for path in candidates {
                    if !path.is_file() {
                        continue;
                    }
                    match version_of(&path).await {
                        Ok(v) if v.starts_with('2') || v.starts_with("v2") => {
                            return Ok(ComposeBinary {
                                path,
                                version: v.trim_start_matches('v').to_owned(),
                            })
                        }
                        Ok(v) => tried.push(format!("{} is version {v}", path.display())),
                        Err(e) => tried.push(format!("{}: {e}", path.display())),
                    }
                }
                let what = if tried.is_empty() {
                    "no docker-compose binary found".to_owned()
                } else {
                    tried.join("; ")
                };
                Err(format!(
                    "Docker Compose v2 is not available ({what}): install it with scripts/install-compose.sh or set stacks.compose_binary"
                ))
            })
            .await
    }

    /// A command for `args` in `dir`, with the environment Compose gets:
    /// the engine's address, `PATH` and `HOME` (for registry credentials),
    /// nothing else.
    pub fn command(&self, bin: &ComposeBinary, dir: &Path, args: &[String]) -> Command {
        let mut cmd = Command::new(&bin.path);
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("DOCKER_HOST", &self.docker_host)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(home) = std::env::var_os("HOME") {
            cmd.env("HOME", home);
        }
        if let Some(cfg) = std::env::var_os("DOCKER_CONFIG") {
            cmd.env("DOCKER_CONFIG", cfg);
        }
        cmd
    }

    /// Runs `cmd`, handing each line of standard output and error to
    /// `on_line` as it comes, for at most `timeout` (then it is killed).
    pub async fn stream(
        &self,
        mut cmd: Command,
        timeout: Duration,
        mut on_line: impl FnMut(String) + Send,
    ) -> Result<Exit, String> {
        let mut child = cmd.spawn().map_err(|e| format!("starting compose: {e}"))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let readers = [
            child.stdout.take().map(|o| forward(o, tx.clone())),
            child.stderr.take().map(|e| forward(e, tx.clone())),
        ];
        drop(tx);
        let run = async {
            let mut readers: Vec<_> = readers.into_iter().flatten().collect();
            while let Some(line) = rx.recv().await {
                on_line(line);
            }
            for r in readers.drain(..) {
                let _ = r.await;
            }
            child.wait().await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(status)) => Ok(match status.code() {
                Some(c) => Exit::Code(c),
                None => Exit::Signal,
            }),
            Ok(Err(e)) => Err(format!("waiting for compose: {e}")),
            // Dropping the child (kill_on_drop) kills it.
            Err(_) => Ok(Exit::TimedOut),
        }
    }

    /// Runs `cmd` to completion and gives its exit and its standard output
    /// and error, apart.
    pub async fn output(
        &self,
        mut cmd: Command,
        timeout: Duration,
    ) -> Result<(Exit, String, String), String> {
        let child = cmd.spawn().map_err(|e| format!("starting compose: {e}"))?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok((
                out.status.code().map(Exit::Code).unwrap_or(Exit::Signal),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )),
            Ok(Err(e)) => Err(format!("running compose: {e}")),
            Err(_) => Ok((Exit::TimedOut, String::new(), String::new())),
        }
    }
}

fn forward(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        // Progress output redraws with carriage returns; keep what a
        // terminal would finally show of each line.
        while let Ok(Some(line)) = lines.next_line().await {
            let shown = line.rsplit('\r').next().unwrap_or("").to_owned();
            if tx.send(shown).is_err() {
                break;
            }
        }
    })
}

async fn version_of(path: &Path) -> Result<String, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(path)
            .arg("version")
            .arg("--short")
            .env_clear()
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| "`version --short` did not answer in 20 s".to_owned())?
    .map_err(|e| e.to_string())?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !v.is_empty() {
        Ok(v)
    } else {
        Err(format!(
            "`version --short` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
