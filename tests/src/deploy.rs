//! The shipped deployment on the real engine: `deploy/compose.yaml` with the
//! images `scripts/build-images.sh --dev` built (`wakedock:dev`,
//! `wakedock-caddy:dev`; `WD_IMAGE_TAG` overrides the tag).
//!
//! The stack runs with Docker Compose v2 when there is one (`WD_COMPOSE`
//! naming a compose binary, else the `docker compose` plugin), otherwise
//! with the equivalent `docker` commands, translated here from the same
//! two files; the translator refuses any key it does not know, so the
//! fallback cannot drift from the compose file unnoticed.
//!
//! Scoping, so a stack never touches anything else on the engine: a unique
//! project name (container, volume and network names), `wakedock.test=true`
//! on every object (a test override file), ports published on 127.0.0.1
//! at random, and the wake plugin's grant limited to containers labelled
//! `wakedock.test.stack=<project>` (a test config file mounted over the
//! image's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::{unique, TEST_LABEL};

/// The label a stack's wake plugin is confined to.
pub const STACK_LABEL: &str = "wakedock.test.stack";

pub fn image_tag() -> String {
    std::env::var("WD_IMAGE_TAG").unwrap_or_else(|_| "dev".into())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a command and returns its stdout; panics with its stderr otherwise.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// How the stack is run.
#[derive(Debug, Clone)]
pub enum Runner {
    /// A compose binary and the arguments before the compose command
    /// (`docker` + `compose`, or a standalone `docker-compose`).
    Compose(PathBuf, Vec<String>),
    /// The equivalent `docker network/volume create` and `docker run`s.
    DockerRun,
}

impl Runner {
    pub fn detect() -> Runner {
        if let Some(bin) = std::env::var_os("WD_COMPOSE") {
            return Runner::Compose(PathBuf::from(bin), Vec::new());
        }
        let plugin = Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if plugin {
            Runner::Compose("docker".into(), vec!["compose".into()])
        } else {
            Runner::DockerRun
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Runner::Compose(bin, pre) => {
                let mut c = Command::new(bin);
                c.args(pre).arg("version");
                let v = c
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default();
                format!("Compose v2 ({} {}: {v})", bin.display(), pre.join(" "))
            }
            Runner::DockerRun => {
                "Compose v2 not found: the equivalent docker commands (set WD_COMPOSE to use a compose binary)".into()
            }
        }
    }
}

/// One running copy of the shipped stack.
pub struct Stack {
    pub project: String,
    pub env: BTreeMap<String, String>,
    pub runner: Runner,
    pub dir: tempfile::TempDir,
    /// Objects the DockerRun runner created, for `down`.
    created: Vec<(String, String)>,
}

/// The test override: labels on every object, the test config mounted over
/// the image's, and (`fast_health`) a 1 s healthcheck interval: Docker
/// 20.10 runs the first check one interval after start.
fn override_yaml(fast_health: bool) -> String {
    let health = if fast_health {
        "    healthcheck:\n      interval: 1s\n"
    } else {
        ""
    };
    format!(
        r#"services:
  wakedock:
    labels:
      {TEST_LABEL}: "true"
    environment:
      WAKEDOCK_CONFIG_PATH: /etc/wakedock-test/wakedock.yaml
    volumes:
      - ./wakedock-test.yaml:/etc/wakedock-test/wakedock.yaml:ro
{health}  caddy:
    labels:
      {TEST_LABEL}: "true"
networks:
  wakedock:
    labels:
      {TEST_LABEL}: "true"
volumes:
  wakedock-data:
    labels:
      {TEST_LABEL}: "true"
  caddy-data:
    labels:
      {TEST_LABEL}: "true"
  caddy-config:
    labels:
      {TEST_LABEL}: "true"
"#
    )
}

/// The image's config with the wake plugin's grant confined to this stack.
fn test_config(project: &str) -> String {
    format!(
        r#"wakedock:
  data_path: /data
  host: 0.0.0.0
  port: 8000
plugins:
  - manifest: /usr/share/wakedock/plugins/wake/plugin.toml
    wasm: /usr/share/wakedock/plugins/wake/wakedock_plugin_wake.wasm
    grant:
      capabilities:
        containers: {{ access: write, selector: "{STACK_LABEL}={project}" }}
        storage: {{ quota-bytes: 4194304 }}
        events: {{ publish: ["wake.*"] }}
        metrics: {{}}
"#
    )
}

/// The group owning the engine's socket.
pub fn socket_gid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/var/run/docker.sock")
        .expect("the Docker socket")
        .gid()
}

impl Stack {
    /// Starts the shipped stack (`docker compose up -d` or equivalent),
    /// with a 1 s healthcheck interval.
    pub fn up(runner: Runner) -> Stack {
        Self::up_with(runner, true)
    }

    /// Like [`Stack::up`]; `fast_health: false` keeps the image's own
    /// healthcheck timing (what a self-hoster gets).
    pub fn up_with(runner: Runner, fast_health: bool) -> Stack {
        let project = unique("wdstack");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(
            repo_root().join("deploy/compose.yaml"),
            dir.path().join("compose.yaml"),
        )
        .expect("copy deploy/compose.yaml");
        std::fs::write(
            dir.path().join("compose.test.yaml"),
            override_yaml(fast_health),
        )
        .unwrap();
        std::fs::write(dir.path().join("wakedock-test.yaml"), test_config(&project)).unwrap();
        std::fs::create_dir_all(dir.path().join("caddy-sites")).unwrap();
        std::fs::write(
            dir.path().join("caddy-sites/hand.caddy"),
            format!("http://hand-{project}.localhost {{\n\trespond \"hand-written\"\n}}\n"),
        )
        .unwrap();
        let env: BTreeMap<String, String> = [
            ("WAKEDOCK_TAG", image_tag()),
            (
                "WAKEDOCK_BRIDGE_TOKEN",
                uuid::Uuid::new_v4().simple().to_string(),
            ),
            ("DOCKER_GID", socket_gid().to_string()),
            ("WAKEDOCK_UI_HOST", format!("ui-{project}.localhost")),
            ("WAKEDOCK_SITES", "http".into()),
            ("WAKEDOCK_NETWORK", format!("{project}-net")),
            ("WAKEDOCK_PUBLISH", "127.0.0.1:0".into()),
            ("CADDY_HTTP_PUBLISH", "127.0.0.1:0".into()),
            ("CADDY_HTTPS_PUBLISH", "127.0.0.1:0".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut stack = Stack {
            project,
            env,
            runner,
            dir,
            created: Vec::new(),
        };
        match stack.runner.clone() {
            Runner::Compose(..) => {
                run(&mut stack.compose(&["up", "-d"]));
            }
            Runner::DockerRun => stack.docker_run_up(),
        }
        stack
    }

    fn compose(&self, args: &[&str]) -> Command {
        let Runner::Compose(bin, pre) = &self.runner else {
            unreachable!("compose command without compose")
        };
        let mut cmd = Command::new(bin);
        cmd.args(pre)
            .args(["-p", &self.project, "-f"])
            .arg(self.dir.path().join("compose.yaml"))
            .arg("-f")
            .arg(self.dir.path().join("compose.test.yaml"))
            .args(args)
            .envs(&self.env);
        cmd
    }

    /// The container of a service (`<project>-<service>-1`, both runners).
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.project)
    }

    pub fn network(&self) -> String {
        self.env["WAKEDOCK_NETWORK"].clone()
    }

    /// The loopback port a service's container port is published on.
    pub fn published(&self, service: &str, port: u16) -> u16 {
        let out = docker(&["port", &self.container(service), &format!("{port}/tcp")]);
        out.lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{service}:{port} is not published on 127.0.0.1: {out:?}"))
    }

    /// A client that sends requests for `hosts` to Caddy's published HTTP
    /// port (no DNS), redirects not followed.
    pub fn via_caddy(&self, hosts: &[&str], timeout: Duration) -> reqwest::Client {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.published("caddy", 80)));
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout);
        for h in hosts {
            b = b.resolve(h, addr);
        }
        b.build().unwrap()
    }

    /// Docker's health status of a service's container.
    pub fn health(&self, service: &str) -> String {
        docker(&[
            "inspect",
            "-f",
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
            &self.container(service),
        ])
        .trim()
        .to_owned()
    }

    /// Waits for Docker to call the service's container `healthy`.
    pub async fn wait_healthy(&self, service: &str, limit: Duration) {
        let what = format!("{} to be healthy", self.container(service));
        crate::eventually(limit, &what, || async {
            match self.health(service).as_str() {
                "healthy" => Some(()),
                "unhealthy" => panic!(
                    "{} is unhealthy:\n{}",
                    self.container(service),
                    self.logs(service)
                ),
                _ => None,
            }
        })
        .await
    }

    /// The service's log (stdout and stderr), ANSI colours removed.
    pub fn logs(&self, service: &str) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.container(service)])
            .output()
            .expect("docker logs");
        strip_ansi(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    pub fn restart(&self, service: &str) {
        match &self.runner {
            Runner::Compose(..) => {
                run(&mut self.compose(&["restart", service]));
            }
            Runner::DockerRun => {
                docker(&["restart", &self.container(service)]);
            }
        }
    }

    /// Removes everything the stack created (containers, network, volumes).
    pub fn down(&mut self) {
        match &self.runner {
            Runner::Compose(..) => {
                let _ = self
                    .compose(&["down", "-v", "--remove-orphans", "-t", "5"])
                    .output();
            }
            Runner::DockerRun => {
                for (kind, name) in self.created.drain(..).rev() {
                    let args: Vec<&str> = match kind.as_str() {
                        "container" => vec!["rm", "-f", "-v", &name],
                        "network" => vec!["network", "rm", &name],
                        _ => vec!["volume", "rm", "-f", &name],
                    };
                    let _ = Command::new("docker").args(&args).output();
                }
            }
        }
    }

    // -----------------------------------------------------------------------
    // The DockerRun runner: the compose file as docker commands.

    fn docker_run_up(&mut self) {
        let spec = load_compose(
            &[
                self.dir.path().join("compose.yaml"),
                self.dir.path().join("compose.test.yaml"),
            ],
            &self.env,
        );
        check_keys(
            &spec,
            &["name", "services", "networks", "volumes"],
            "top level",
        );
        let networks = spec
            .get("networks")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let mut net_names = BTreeMap::new();
        for (key, def) in &networks {
            let key = key.as_str().unwrap().to_owned();
            check_keys(def, &["name", "labels"], &format!("networks.{key}"));
            let name = def
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{}_{key}", self.project));
            let mut args = vec!["network".to_owned(), "create".to_owned()];
            args.extend(label_args(def.get("labels")));
            args.push(name.clone());
            run(Command::new("docker").args(&args));
            self.created.push(("network".into(), name.clone()));
            net_names.insert(key, name);
        }
        let volumes = spec
            .get("volumes")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        for (key, def) in &volumes {
            let key = key.as_str().unwrap();
            check_keys(def, &["labels"], &format!("volumes.{key}"));
            let name = format!("{}_{key}", self.project);
            let mut args = vec!["volume".to_owned(), "create".to_owned()];
            args.extend(label_args(def.get("labels")));
            args.push(name.clone());
            run(Command::new("docker").args(&args));
            self.created.push(("volume".into(), name));
        }
        let services = spec["services"].as_mapping().expect("services").clone();
        for (name, svc) in start_order(&services) {
            let args = self.run_args(&name, &svc, &net_names);
            run(Command::new("docker").args(&args));
            self.created
                .push(("container".into(), self.container(&name)));
        }
    }

    fn run_args(&self, name: &str, svc: &Value, nets: &BTreeMap<String, String>) -> Vec<String> {
        check_keys(svc, SERVICE_KEYS, &format!("services.{name}"));
        let mut a: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            self.container(name),
        ];
        // The labels compose itself puts on a service's containers.
        for (k, v) in [
            ("com.docker.compose.project", self.project.as_str()),
            ("com.docker.compose.service", name),
        ] {
            a.extend(["--label".into(), format!("{k}={v}")]);
        }
        a.extend(label_args(svc.get("labels")));
        if let Some(r) = svc.get("restart").and_then(Value::as_str) {
            a.extend(["--restart".into(), r.into()]);
        }
        if let Some(env) = svc.get("environment").and_then(Value::as_mapping) {
            for (k, v) in env {
                a.extend(["-e".into(), format!("{}={}", scalar(k), scalar(v))]);
            }
        }
        for g in seq(svc.get("group_add")) {
            a.extend(["--group-add".into(), scalar(&g)]);
        }
        for v in seq(svc.get("volumes")) {
            let v = scalar(&v);
            let (src, rest) = v.split_once(':').expect("volume as src:dst");
            let src = if let Some(rel) = src.strip_prefix("./") {
                let p = self.dir.path().join(rel);
                if !p.exists() {
                    std::fs::create_dir_all(&p).unwrap();
                }
                p.display().to_string()
            } else if src.starts_with('/') {
                src.to_owned()
            } else {
                format!("{}_{src}", self.project)
            };
            a.extend(["-v".into(), format!("{src}:{rest}")]);
        }
        for p in seq(svc.get("ports")) {
            a.extend(["-p".into(), scalar(&p)]);
        }
        if let Some(h) = svc.get("healthcheck") {
            check_keys(
                h,
                &["interval", "timeout", "retries", "start_period"],
                &format!("services.{name}.healthcheck"),
            );
            for (k, flag) in [
                ("interval", "--health-interval"),
                ("timeout", "--health-timeout"),
                ("retries", "--health-retries"),
                ("start_period", "--health-start-period"),
            ] {
                if let Some(v) = h.get(k) {
                    a.extend([flag.into(), scalar(v)]);
                }
            }
        }
        let svc_nets = seq(svc.get("networks"));
        let first = svc_nets
            .first()
            .map(scalar)
            .unwrap_or_else(|| "default".into());
        assert!(
            svc_nets.len() <= 1,
            "services.{name}: the fallback joins one network"
        );
        let net = nets
            .get(&first)
            .unwrap_or_else(|| panic!("services.{name}: unknown network {first}"));
        a.extend([
            "--network".into(),
            net.clone(),
            "--network-alias".into(),
            name.into(),
        ]);
        a.push(scalar(svc.get("image").expect("image")));
        a
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.down();
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn seq(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_sequence).cloned().unwrap_or_default()
}

fn label_args(labels: Option<&Value>) -> Vec<String> {
    labels
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .flat_map(|(k, v)| ["--label".to_owned(), format!("{}={}", scalar(k), scalar(v))])
                .collect()
        })
        .unwrap_or_default()
}

/// The service keys the fallback translates.
const SERVICE_KEYS: &[&str] = &[
    "image",
    "restart",
    "environment",
    "group_add",
    "volumes",
    "ports",
    "labels",
    "networks",
    "depends_on",
    "healthcheck",
];

fn check_keys(v: &Value, known: &[&str], at: &str) {
    let Some(m) = v.as_mapping() else { return };
    for k in m.keys() {
        let k = scalar(k);
        assert!(
            known.contains(&k.as_str()),
            "{at}: the docker-run fallback (tests/src/deploy.rs) does not know the compose key `{k}`: teach it, or install Compose v2"
        );
    }
}

/// Services with their `depends_on` first.
fn start_order(services: &Mapping) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut left: Vec<(String, Value)> = services
        .iter()
        .map(|(k, v)| (scalar(k), v.clone()))
        .collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|(name, svc)| {
            let deps: Vec<String> = match svc.get("depends_on") {
                Some(Value::Sequence(s)) => s.iter().map(scalar).collect(),
                Some(Value::Mapping(m)) => m.keys().map(scalar).collect(),
                _ => Vec::new(),
            };
            if deps.iter().all(|d| out.iter().any(|(n, _)| n == d)) {
                out.push((name.clone(), svc.clone()));
                false
            } else {
                true
            }
        });
        assert!(left.len() < before, "depends_on cycle");
    }
    out
}

/// Reads and merges compose files as Compose does for the keys the shipped
/// file uses: mappings merge, sequences append, scalars of later files win;
/// `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `$$`
/// are interpolated from `env`.
pub fn load_compose(files: &[PathBuf], env: &BTreeMap<String, String>) -> Value {
    let mut merged = Value::Mapping(Mapping::new());
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let v: Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        merge(&mut merged, interpolate_all(v, env, f));
    }
    merged
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) => b.extend(o),
        (b, o) => *b = o,
    }
}

fn interpolate_all(v: Value, env: &BTreeMap<String, String>, file: &Path) -> Value {
    match v {
        Value::String(s) => Value::String(
            interpolate(&s, env).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        ),
        Value::Sequence(s) => Value::Sequence(
            s.into_iter()
                .map(|x| interpolate_all(x, env, file))
                .collect(),
        ),
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .map(|(k, x)| (k, interpolate_all(x, env, file)))
                .collect(),
        ),
        other => other,
    }
}

pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(body) = rest.strip_prefix('{') else {
            return Err(format!("unsupported `${rest}` (write ${{VAR}})"));
        };
        let end = body
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let expr = &body[..end];
        rest = &body[end + 1..];
        let name_len = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_len);
        let val = env.get(name).cloned();
        let value = match op {
            "" => val.unwrap_or_default(),
            _ if op.starts_with(":-") => val
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| op[2..].to_owned()),
            _ if op.starts_with('-') => val.unwrap_or_else(|| op[1..].to_owned()),
            _ if op.starts_with(":?") => val.filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("required variable {name} is missing a value: {}", &op[2..])
            })?,
            _ if op.starts_with('?') => {
                val.ok_or_else(|| format!("required variable {name}: {}", &op[1..]))?
            }
            _ => return Err(format!("unsupported interpolation ${{{expr}}}")),
        };
        out.push_str(&value);
    }
    out.push_str(rest);
    Ok(out)
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The first admin's generated password, from the start banner WakeDock
/// prints on stdout once (`  Password:    <password>`).
pub fn admin_password_from_log(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.trim_start().strip_prefix("Password:"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// A test app container on the stack's network with only labels, removed
/// when dropped.
pub struct LabelledApp {
    pub name: String,
}

impl LabelledApp {
    pub fn run(stack: &Stack, labels: &[(&str, &str)]) -> LabelledApp {
        Self::docker(stack, labels, &["run", "-d"])
    }

    /// Created, not started.
    pub fn create(stack: &Stack, labels: &[(&str, &str)]) -> LabelledApp {
        Self::docker(stack, labels, &["create"])
    }

    fn docker(stack: &Stack, labels: &[(&str, &str)], cmd: &[&str]) -> LabelledApp {
        let name = unique("wd-deploy-app");
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--name".into(),
            name.clone(),
            "--network".into(),
            stack.network(),
            "--label".into(),
            format!("{TEST_LABEL}=true"),
            "--label".into(),
            format!("{STACK_LABEL}={}", stack.project),
        ]);
        for (k, v) in labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.push(crate::TEST_IMAGE.into());
        run(Command::new("docker").args(&args));
        LabelledApp { name }
    }

    pub fn state(&self) -> String {
        docker(&["inspect", "-f", "{{.State.Status}}", &self.name])
            .trim()
            .to_owned()
    }
}

impl Drop for LabelledApp {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_like_compose() {
        let env: BTreeMap<String, String> = [("A", "1"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(interpolate("x${A}y", &env).unwrap(), "x1y");
        assert_eq!(interpolate("${B:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("${E:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("${E-d}", &env).unwrap(), "");
        assert_eq!(interpolate("$${A}", &env).unwrap(), "${A}");
        assert!(interpolate("${B:?set B}", &env)
            .unwrap_err()
            .contains("set B"));
    }

    #[test]
    fn password_from_the_first_start_banner() {
        let line = "  Username:    admin\n  Password:    TA1fq2noZ2k04UuaKE5DEojO\n";
        assert_eq!(
            admin_password_from_log(&strip_ansi(line)).as_deref(),
            Some("TA1fq2noZ2k04UuaKE5DEojO")
        );
        assert_eq!(
            strip_ansi("\u{1b}[3mpassword\u{1b}[0m\u{1b}[2m=\u{1b}[0mX"),
            "password=X"
        );
    }

    #[test]
    fn the_shipped_compose_file_is_understood_by_the_fallback() {
        let env: BTreeMap<String, String> = [("WAKEDOCK_BRIDGE_TOKEN", "t"), ("DOCKER_GID", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let spec = load_compose(&[repo_root().join("deploy/compose.yaml")], &env);
        let services = spec["services"].as_mapping().unwrap();
        let order: Vec<String> = start_order(services).into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, vec!["wakedock", "caddy"]);
        for (name, svc) in services {
            check_keys(svc, SERVICE_KEYS, &scalar(name));
            assert_eq!(svc["restart"], "unless-stopped");
        }
        assert_eq!(spec["services"]["wakedock"]["image"], "wakedock:0");
        // Without the required variables the file refuses to start.
        let err = std::panic::catch_unwind(|| {
            load_compose(&[repo_root().join("deploy/compose.yaml")], &BTreeMap::new())
        });
        assert!(err.is_err());
    }
}
