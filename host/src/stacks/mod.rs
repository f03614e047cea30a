//! Compose stacks, host side (issue 11): the `files` and `compose`
//! capabilities plugins get (API 0.1.3), both confined to the stacks
//! directory (`stacks.dir`).
//!
//! - [`files`]: the directory through `cap_std` (no path out of it).
//! - [`runner`]: the real `docker compose` v2 CLI, clean environment.
//! - [`actions`]: one action per project, output kept and fanned out.
//!
//! This module implements [`ComposeHost`]: each project is the folder
//! `<stacks dir>/<project>` (a real directory, not a link, whose compose
//! files and `.env` are inside it); actions run in the background, bounded
//! by `stacks.action_timeout`; every output line goes to the project's live
//! feed (the `GET /api/v1/compose/{project}/output` stream) and to the
//! event bus (`compose.output`), beside `compose.started` and
//! `compose.finished`; every action is audited (`compose.<kind>`) with its
//! caller and outcome.

pub mod actions;
pub mod files;
pub mod runner;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wakedock_plugin_runtime::caps::{
    ActionState, ActionStatus, BoxFuture, ComposeAction, ComposeCaller, ComposeContainer,
    ComposeError, ComposeHost, ComposeResult, PullPolicy,
};

use crate::db::audit::NewAuditEntry;
use crate::db::Db;
use crate::docker::DockerEngine;
use crate::events::EventBus;
use actions::{Action, Actions};
use runner::{Exit, Runner};

/// The file names Compose looks for, in its order.
pub const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Longest a read-only call (`config`, `ps`, `logs`) may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of output carried by a `compose.finished` event.
const FINISHED_EVENT_LINES: usize = 200;

/// The compose capability.
#[derive(Debug)]
pub struct Compose {
    /// The stacks directory, canonical.
    root: PathBuf,
    runner: Runner,
    actions: Arc<Actions>,
    action_timeout: Duration,
    bus: EventBus,
    db: Db,
    docker: Arc<DockerEngine>,
}

fn invalid(msg: impl Into<String>) -> ComposeError {
    ComposeError::Invalid(msg.into())
}

impl Compose {
    pub fn new(
        root: &Path,
        binary: Option<PathBuf>,
        action_timeout: Duration,
        docker_socket: &Path,
        bus: EventBus,
        db: Db,
        docker: Arc<DockerEngine>,
    ) -> std::io::Result<Compose> {
        std::fs::create_dir_all(root)?;
        Ok(Compose {
            root: root.canonicalize()?,
            runner: Runner::new(binary, docker_socket),
            actions: Arc::new(Actions::default()),
            action_timeout,
            bus,
            db,
            docker,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The actions registry (the live output stream reads it).
    pub fn actions(&self) -> &Arc<Actions> {
        &self.actions
    }

    /// The project's folder, refused when it is missing, not a directory,
    /// a symbolic link, or holds a compose file or `.env` that leads out of
    /// it.
    fn project_dir(&self, project: &str) -> ComposeResult<PathBuf> {
        let dir = self.root.join(project);
        let meta = match std::fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ComposeError::NotFound)
            }
            Err(e) => return Err(ComposeError::Unavailable(format!("{project}: {e}"))),
        };
        if meta.file_type().is_symlink() {
            return Err(ComposeError::PermissionDenied(format!(
                "the stack folder `{project}` is a symbolic link: a stack must live inside the stacks directory"
            )));
        }
        if !meta.is_dir() {
            return Err(invalid(format!("`{project}` is not a folder")));
        }
        for name in COMPOSE_FILES.iter().chain(&[".env"]) {
            self.inside(&dir, name)?;
        }
        Ok(dir)
    }

    /// Refuses `name` in `dir` when it resolves outside `dir` (a link out).
    fn inside(&self, dir: &Path, name: &str) -> ComposeResult<()> {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        match path.canonicalize() {
            Ok(real) if real.starts_with(dir) => Ok(()),
            Ok(real) => Err(ComposeError::PermissionDenied(format!(
                "`{name}` in the stack folder leads to {}, outside the stack: refused",
                real.display()
            ))),
            Err(e) => Err(invalid(format!("`{name}`: {e}"))),
        }
    }

    /// `-p <project> --project-directory <dir>` plus the output flags every
    /// call shares; a hand-run `docker compose` in the folder names the
    /// project the same.
    fn base_args(project: &str, dir: &Path) -> Vec<String> {
        vec![
            "--ansi".into(),
            "never".into(),
            "--progress".into(),
            "plain".into(),
            "--project-name".into(),
            project.into(),
            "--project-directory".into(),
            dir.display().to_string(),
        ]
    }

    async fn binary(&self) -> ComposeResult<&runner::ComposeBinary> {
        self.runner
            .binary()
            .await
            .map_err(ComposeError::Unavailable)
    }

    /// Runs a read-only subcommand and gives its standard output, or
    /// Compose's message as `invalid-project` / `unavailable`.
    async fn quick(&self, project: &str, args: Vec<String>) -> ComposeResult<String> {
        let dir = self.project_dir(project)?;
        let bin = self.binary().await?;
        let cmd = self.runner.command(bin, &dir, &args);
        let (exit, out, err) = self
            .runner
            .output(cmd, QUICK_TIMEOUT)
            .await
            .map_err(ComposeError::Unavailable)?;
        match exit {
            Exit::Code(0) => Ok(out),
            Exit::TimedOut => Err(ComposeError::Timeout),
            _ => Err(compose_failure(&err)),
        }
    }

    async fn run_action(
        self: Arc<Self>,
        action: Arc<Action>,
        dir: PathBuf,
        args: Vec<String>,
        caller: ComposeCaller,
    ) {
        let status = action.brief();
        let started = std::time::Instant::now();
        let outcome = match self.binary().await {
            Err(e) => Err(format!("{e:?}")),
            Ok(bin) => {
                let cmd = self.runner.command(bin, &dir, &args);
                let (actions, bus) = (self.actions.clone(), self.bus.clone());
                let (id, project) = (status.id.clone(), status.project.clone());
                self.runner
                    .stream(cmd, self.action_timeout, |line| {
                        bus.publish(
                            "host",
                            "compose.output",
                            &serde_json::json!({"id": id, "project": project, "line": line})
                                .to_string(),
                        );
                        actions.line(&action, line);
                    })
                    .await
            }
        };
        let (state, code) = match &outcome {
            Ok(Exit::Code(0)) => (ActionState::Succeeded, Some(0)),
            Ok(Exit::Code(c)) => (ActionState::Failed, Some(*c)),
            Ok(Exit::Signal) => (ActionState::Failed, None),
            Ok(Exit::TimedOut) => {
                self.actions.line(
                    &action,
                    format!(
                        "stopped: the action ran longer than stacks.action_timeout ({} s)",
                        self.action_timeout.as_secs()
                    ),
                );
                (ActionState::TimedOut, None)
            }
            Err(e) => {
                self.actions.line(&action, format!("could not run: {e}"));
                (ActionState::Failed, None)
            }
        };
        let done = self.actions.finish(&action, state, code);
        let took = started.elapsed();
        let tail: Vec<&String> = done
            .lines
            .iter()
            .rev()
            .take(FINISHED_EVENT_LINES)
            .rev()
            .collect();
        self.bus.publish(
            "host",
            "compose.finished",
            &serde_json::json!({
                "id": done.id, "project": done.project, "kind": done.kind,
                "state": state_name(state), "exit_code": code,
                "started_at_ms": done.started_at_ms, "finished_at_ms": done.finished_at_ms,
                "started_by": done.started_by, "lines": tail, "lines_dropped": done.lines_dropped
                    + (done.lines.len() - tail.len()) as u64,
            })
            .to_string(),
        );
        let mut entry = NewAuditEntry::new(
            &format!("compose.{}", done.kind),
            if state == ActionState::Succeeded {
                "success"
            } else {
                "failure"
            },
        );
        entry.actor = Some(
            caller
                .user
                .clone()
                .unwrap_or_else(|| format!("plugin:{}", caller.plugin)),
        );
        entry.target = Some(done.project.clone());
        entry.detail = Some(format!(
            "{} (plugin {}): {} after {:.1} s{}",
            done.command,
            caller.plugin,
            state_name(state),
            took.as_secs_f64(),
            done.lines
                .last()
                .map(|l| format!("; last line: {}", l.chars().take(200).collect::<String>()))
                .unwrap_or_default()
        ));
        let db = self.db.clone();
        if let Err(e) = db.run(move |c| crate::db::audit::insert(c, &entry)).await {
            tracing::error!(error = %e, "could not audit a compose action");
        }
        tracing::info!(project = %done.project, kind = %done.kind, state = state_name(state), "compose action finished");
    }

    async fn adopt_impl(&self, caller: &ComposeCaller, project: &str) -> ComposeResult<()> {
        let label = format!("com.docker.compose.project={project}");
        let containers = self
            .docker
            .list(&[label])
            .await
            .map_err(|e| ComposeError::Unavailable(e.to_string()))?;
        let dirs: std::collections::BTreeSet<&str> = containers
            .iter()
            .filter_map(|c| c.labels.get("com.docker.compose.project.working_dir"))
            .map(String::as_str)
            .collect();
        let from = match dirs.len() {
            0 => return Err(ComposeError::NotFound),
            1 => PathBuf::from(dirs.into_iter().next().unwrap_or_default()),
            _ => {
                return Err(invalid(format!(
                    "the containers of `{project}` name several folders ({}): adopt it by hand",
                    dirs.into_iter().collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let to = self.root.join(project);
        let from_real = from.canonicalize().map_err(|e| {
            invalid(format!(
                "the project's folder {} cannot be read: {e}",
                from.display()
            ))
        })?;
        if from_real.starts_with(&self.root) {
            return Err(invalid(format!(
                "`{project}` already lives in the stacks directory ({})",
                from.display()
            )));
        }
        if self.root.starts_with(&from_real) || from_real.parent().is_none() {
            return Err(invalid(format!(
                "{} holds the stacks directory: it cannot be moved into it",
                from.display()
            )));
        }
        for c in &containers {
            if let Some(files) = c.labels.get("com.docker.compose.project.config_files") {
                for f in files.split(',').filter(|f| !f.is_empty()) {
                    let real = Path::new(f)
                        .canonicalize()
                        .unwrap_or_else(|_| PathBuf::from(f));
                    if !real.starts_with(&from_real) {
                        return Err(invalid(format!(
                            "`{project}` uses the compose file {f}, outside its folder {}: only a folder that holds its compose files can be adopted",
                            from.display()
                        )));
                    }
                }
            }
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(invalid(format!(
                "the stacks directory already has a `{project}`: rename one of them first"
            )));
        }
        let result = std::fs::rename(&from_real, &to).map_err(|e| {
            if e.raw_os_error() == Some(18) {
                invalid(format!(
                    "{} is on another filesystem than the stacks directory ({}): move it there by hand (mv {} {})",
                    from.display(),
                    self.root.display(),
                    from.display(),
                    to.display()
                ))
            } else {
                ComposeError::Unavailable(format!("moving {}: {e}", from.display()))
            }
        });
        let mut entry = NewAuditEntry::new(
            "compose.adopt",
            if result.is_ok() { "success" } else { "failure" },
        );
        entry.actor = Some(
            caller
                .user
                .clone()
                .unwrap_or_else(|| format!("plugin:{}", caller.plugin)),
        );
        entry.target = Some(project.to_owned());
        entry.detail = Some(match &result {
            Ok(()) => format!("moved {} to {}", from.display(), to.display()),
            Err(e) => format!("{e:?}"),
        });
        let db = self.db.clone();
        let _ = db.run(move |c| crate::db::audit::insert(c, &entry)).await;
        result
    }
}

pub fn state_name(s: ActionState) -> &'static str {
    match s {
        ActionState::Running => "running",
        ActionState::Succeeded => "succeeded",
        ActionState::Failed => "failed",
        ActionState::TimedOut => "timed-out",
    }
}

/// Compose's message on failure: `invalid-project` when it says the files
/// are wrong, `unavailable` when the engine or Compose itself failed.
fn compose_failure(stderr: &str) -> ComposeError {
    let lines: Vec<String> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let text = lines.join(" ");
    if text.contains("Cannot connect to the Docker daemon")
        || text.contains("docker.sock")
        || text.contains("connection refused")
    {
        ComposeError::Unavailable(text)
    } else if lines.is_empty() {
        ComposeError::Unavailable("compose failed without a message".into())
    } else {
        ComposeError::InvalidProject(lines)
    }
}

impl Compose {
    /// Compose is about to stop the project's running containers (of
    /// `services`, all if empty) on the caller's behalf: their `die` is
    /// not a crash (see `docker::intents`), so no alert fires for a stack
    /// stopped from its page. One container listing.
    async fn note_stops(&self, project: &str, services: &[String], caller: &ComposeCaller) {
        let label = format!("com.docker.compose.project={project}");
        let list = match self.docker.list(&[label]).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(project, error = %e, "listing the project's containers before a stop");
                return;
            }
        };
        let by = match &caller.user {
            Some(user) => format!("user:{user}"),
            None => format!("plugin:{}", caller.plugin),
        };
        let chosen = |c: &crate::docker::ContainerSummary| {
            services.is_empty()
                || c.labels
                    .get("com.docker.compose.service")
                    .is_some_and(|s| services.contains(s))
        };
        for c in list
            .iter()
            .filter(|c| c.state != "exited" && c.state != "created")
        {
            if chosen(c) {
                self.docker.expect_stop(&c.id, &by);
            }
        }
    }
}

/// The subcommand arguments of an action, and its kind.
fn action_args(action: &ComposeAction) -> (&'static str, Vec<String>) {
    let mut args: Vec<String> = Vec::new();
    let kind = match action {
        ComposeAction::Up(o) => {
            args.extend(["up".into(), "--detach".into()]);
            args.push(format!(
                "--pull={}",
                match o.pull {
                    PullPolicy::Missing => "missing",
                    PullPolicy::Always => "always",
                    PullPolicy::Never => "never",
                }
            ));
            if o.remove_orphans {
                args.push("--remove-orphans".into());
            }
            if o.force_recreate {
                args.push("--force-recreate".into());
            }
            args.extend(o.services.iter().cloned());
            "up"
        }
        ComposeAction::Pull(s) => {
            args.push("pull".into());
            args.extend(s.iter().cloned());
            "pull"
        }
        ComposeAction::Start(s) => {
            args.push("start".into());
            args.extend(s.iter().cloned());
            "start"
        }
        ComposeAction::Stop(s) => {
            args.push("stop".into());
            args.extend(s.iter().cloned());
            "stop"
        }
        ComposeAction::Restart(s) => {
            args.push("restart".into());
            args.extend(s.iter().cloned());
            "restart"
        }
        ComposeAction::Down(o) => {
            args.push("down".into());
            if o.volumes {
                args.push("--volumes".into());
            }
            if o.remove_orphans {
                args.push("--remove-orphans".into());
            }
            "down"
        }
    };
    (kind, args)
}

/// The shared handle plugins' capability calls go through.
#[derive(Debug, Clone)]
pub struct ComposeCap(pub Arc<Compose>);

impl ComposeHost for ComposeCap {
    fn start_action<'a>(
        &'a self,
        caller: &'a ComposeCaller,
        project: &'a str,
        action: ComposeAction,
    ) -> BoxFuture<'a, ComposeResult<String>> {
        Box::pin(async move {
            let dir = self.0.project_dir(project)?;
            // Fail at once (not inside the action) without a binary.
            self.0.binary().await?;
            let (kind, sub) = action_args(&action);
            let stopped = match &action {
                ComposeAction::Stop(s) | ComposeAction::Restart(s) => Some(s.as_slice()),
                ComposeAction::Down(_) => Some(&[][..]),
                _ => None,
            };
            if let Some(services) = stopped {
                self.0.note_stops(project, services, caller).await;
            }
            let mut args = Compose::base_args(project, &dir);
            args.extend(sub.iter().cloned());
            let id = uuid::Uuid::new_v4().simple().to_string();
            let status = ActionStatus {
                id: id.clone(),
                project: project.to_owned(),
                kind: kind.to_owned(),
                command: format!("docker compose {}", sub.join(" ")),
                state: ActionState::Running,
                exit_code: None,
                started_at_ms: crate::db::now_ms() as u64,
                finished_at_ms: None,
                started_by: caller.user.clone(),
                lines: Vec::new(),
                lines_dropped: 0,
            };
            let action = self
                .0
                .actions
                .begin(status.clone())
                .map_err(ComposeError::Conflict)?;
            self.0
                .actions
                .line(&action, format!("$ {}", status.command));
            self.0.bus.publish(
                "host",
                "compose.started",
                &serde_json::json!({
                    "id": id, "project": project, "kind": kind, "started_by": caller.user,
                })
                .to_string(),
            );
            tokio::spawn(self.0.clone().run_action(action, dir, args, caller.clone()));
            Ok(id)
        })
    }

    fn await_action<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, ComposeResult<ActionStatus>> {
        Box::pin(async move {
            let action = self.0.actions.get(id).ok_or(ComposeError::NotFound)?;
            let _ = tokio::time::timeout(timeout, action.finished()).await;
            Ok(action.status())
        })
    }

    fn last_action<'a>(
        &'a self,
        project: &'a str,
    ) -> BoxFuture<'a, ComposeResult<Option<ActionStatus>>> {
        Box::pin(async move { Ok(self.0.actions.last(project).map(|a| a.status())) })
    }

    fn config<'a>(
        &'a self,
        project: &'a str,
        files: &'a [String],
        env_file: Option<&'a str>,
    ) -> BoxFuture<'a, ComposeResult<String>> {
        Box::pin(async move {
            let dir = self.0.project_dir(project)?;
            let mut args = Compose::base_args(project, &dir);
            for f in files {
                self.0.inside(&dir, f)?;
                args.extend(["--file".into(), dir.join(f).display().to_string()]);
            }
            if let Some(e) = env_file {
                self.0.inside(&dir, e)?;
                args.extend(["--env-file".into(), dir.join(e).display().to_string()]);
            }
            args.extend(["config".into(), "--format".into(), "json".into()]);
            self.0.quick(project, args).await
        })
    }

    fn ps<'a>(&'a self, project: &'a str) -> BoxFuture<'a, ComposeResult<Vec<ComposeContainer>>> {
        Box::pin(async move {
            let dir = self.0.project_dir(project)?;
            let mut args = Compose::base_args(project, &dir);
            args.extend([
                "ps".into(),
                "--all".into(),
                "--format".into(),
                "json".into(),
            ]);
            let out = self.0.quick(project, args).await?;
            Ok(parse_ps(&out))
        })
    }

    fn logs<'a>(
        &'a self,
        project: &'a str,
        services: &'a [String],
        tail: u32,
    ) -> BoxFuture<'a, ComposeResult<Vec<String>>> {
        Box::pin(async move {
            let dir = self.0.project_dir(project)?;
            let mut args = Compose::base_args(project, &dir);
            args.extend(["logs".into(), "--no-color".into(), format!("--tail={tail}")]);
            args.extend(services.iter().cloned());
            let out = self.0.quick(project, args).await?;
            Ok(out.lines().map(str::to_owned).collect())
        })
    }

    fn adopt<'a>(
        &'a self,
        caller: &'a ComposeCaller,
        project: &'a str,
    ) -> BoxFuture<'a, ComposeResult<()>> {
        Box::pin(self.0.adopt_impl(caller, project))
    }
}

/// `docker compose ps --format json`: one object per line (newer Compose)
/// or one array (older).
fn parse_ps(out: &str) -> Vec<ComposeContainer> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Row {
        #[serde(default)]
        name: String,
        #[serde(default)]
        service: String,
        #[serde(default)]
        state: String,
        #[serde(default)]
        health: String,
        #[serde(default)]
        exit_code: i32,
        #[serde(default)]
        image: String,
        #[serde(default)]
        publishers: Option<Vec<Publisher>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Publisher {
        #[serde(default, rename = "URL")]
        url: String,
        #[serde(default)]
        target_port: u16,
        #[serde(default)]
        published_port: u16,
        #[serde(default)]
        protocol: String,
    }
    let rows: Vec<Row> = match serde_json::from_str::<Vec<Row>>(out.trim()) {
        Ok(rows) => rows,
        Err(_) => out
            .lines()
            .filter_map(|l| serde_json::from_str::<Row>(l).ok())
            .collect(),
    };
    rows.into_iter()
        .map(|r| ComposeContainer {
            ports: r
                .publishers
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.published_port != 0)
                .map(|p| {
                    format!(
                        "{}:{}->{}/{}",
                        p.url, p.published_port, p.target_port, p.protocol
                    )
                })
                .collect(),
            name: r.name,
            service: r.service,
            state: r.state,
            health: r.health,
            exit_code: r.exit_code,
            image: r.image,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_of_both_compose_formats_is_read() {
        let lines = r#"{"Name":"web-app-1","Service":"app","State":"running","Health":"","ExitCode":0,"Image":"app:1","Publishers":[{"URL":"127.0.0.1","TargetPort":80,"PublishedPort":8080,"Protocol":"tcp"}]}
{"Name":"web-db-1","Service":"db","State":"exited","Health":"","ExitCode":137,"Image":"db:1","Publishers":null}"#;
        let ps = parse_ps(lines);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].ports, vec!["127.0.0.1:8080->80/tcp"]);
        assert_eq!(ps[1].exit_code, 137);
        let array = format!("[{}]", lines.replace('\n', ","));
        assert_eq!(parse_ps(&array).len(), 2);
    }

    #[test]
    fn compose_messages_become_invalid_project_or_unavailable() {
        match compose_failure("yaml: line 3: mapping values are not allowed in this context\n") {
            ComposeError::InvalidProject(m) => assert!(m[0].contains("line 3")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            compose_failure("Cannot connect to the Docker daemon at unix:///x.sock"),
            ComposeError::Unavailable(_)
        ));
    }

    #[test]
    fn actions_are_the_documented_commands() {
        let (kind, args) = action_args(&ComposeAction::Up(
            wakedock_plugin_runtime::caps::UpOptions {
                services: vec!["app".into()],
                pull: PullPolicy::Always,
                remove_orphans: true,
                force_recreate: false,
            },
        ));
        assert_eq!(kind, "up");
        assert_eq!(
            args,
            ["up", "--detach", "--pull=always", "--remove-orphans", "app"]
        );
        let (_, args) = action_args(&ComposeAction::Down(
            wakedock_plugin_runtime::caps::DownOptions {
                volumes: false,
                remove_orphans: false,
            },
        ));
        assert_eq!(args, ["down"]);
    }
}
