//! Compose actions in flight and just finished: one running action per
//! project, the last lines of each action's output (replayed to a client
//! that joins late), and a live feed per project for the host's output
//! stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use wakedock_plugin_runtime::caps::{ActionState, ActionStatus};

/// Output lines kept per action.
pub const KEPT_LINES: usize = 500;
/// Finished actions kept in memory (the newest per project always is).
const KEPT_ACTIONS: usize = 200;

/// What a project's live feed carries.
#[derive(Debug, Clone)]
pub enum ProjectEvent {
    /// An action began (its status, no lines yet).
    Started(ActionStatus),
    /// One line of an action's output.
    Line { id: String, line: String },
    /// An action ended (its status, without the lines).
    Finished(ActionStatus),
}

/// One action: its status and its last lines.
#[derive(Debug)]
pub struct Action {
    status: Mutex<ActionStatus>,
    lines: Mutex<(VecDeque<String>, u64)>,
    done: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Action {
    /// The status with its kept lines.
    pub fn status(&self) -> ActionStatus {
        let mut s = lock(&self.status).clone();
        let (lines, dropped) = &*lock(&self.lines);
        s.lines = lines.iter().cloned().collect();
        s.lines_dropped = *dropped;
        s
    }

    /// The status without lines (for events).
    pub fn brief(&self) -> ActionStatus {
        lock(&self.status).clone()
    }

    /// Resolves once the action has ended.
    pub async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// Every project's running and last actions.
#[derive(Debug, Default)]
pub struct Actions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Arc<Action>>,
    /// Ids, oldest first, for pruning.
    order: VecDeque<String>,
    running: HashMap<String, String>,
    last: HashMap<String, String>,
    feeds: HashMap<String, broadcast::Sender<ProjectEvent>>,
}

impl Inner {
    fn feed(&mut self, project: &str) -> broadcast::Sender<ProjectEvent> {
        self.feeds
            .entry(project.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }
}

impl Actions {
    /// Registers a new running action of `status.project`, or gives the id
    /// of the one already running there.
    pub fn begin(&self, status: ActionStatus) -> Result<Arc<Action>, String> {
        let mut inner = lock(&self.inner);
        if let Some(id) = inner.running.get(&status.project) {
            return Err(id.clone());
        }
        let project = status.project.clone();
        let id = status.id.clone();
        let action = Arc::new(Action {
            status: Mutex::new(status.clone()),
            lines: Mutex::new((VecDeque::new(), 0)),
            done: watch::channel(false).0,
        });
        inner.by_id.insert(id.clone(), action.clone());
        inner.order.push_back(id.clone());
        inner.running.insert(project.clone(), id.clone());
        inner.last.insert(project.clone(), id);
        while inner.order.len() > KEPT_ACTIONS {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            let keep = inner.last.values().any(|v| *v == old);
            if keep {
                inner.order.push_back(old);
                break;
            }
            inner.by_id.remove(&old);
        }
        let _ = inner.feed(&project).send(ProjectEvent::Started(status));
        Ok(action)
    }

    /// Appends a line to an action's output and its project's feed.
    pub fn line(&self, action: &Action, line: String) {
        let (id, project) = {
            let s = lock(&action.status);
            (s.id.clone(), s.project.clone())
        };
        {
            let mut l = lock(&action.lines);
            if l.0.len() == KEPT_LINES {
                l.0.pop_front();
                l.1 += 1;
            }
            l.0.push_back(line.clone());
        }
        let feed = lock(&self.inner).feed(&project);
        let _ = feed.send(ProjectEvent::Line { id, line });
    }

    /// Marks an action ended; its project is free for the next one.
    pub fn finish(
        &self,
        action: &Action,
        state: ActionState,
        exit_code: Option<i32>,
    ) -> ActionStatus {
        let brief = {
            let mut s = lock(&action.status);
            s.state = state;
            s.exit_code = exit_code;
            s.finished_at_ms = Some(crate::db::now_ms() as u64);
            s.clone()
        };
        {
            let mut inner = lock(&self.inner);
            if inner.running.get(&brief.project) == Some(&brief.id) {
                inner.running.remove(&brief.project);
            }
            let _ = inner
                .feed(&brief.project)
                .send(ProjectEvent::Finished(brief.clone()));
        }
        action.done.send_replace(true);
        action.status()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Action>> {
        lock(&self.inner).by_id.get(id).cloned()
    }

    /// The project's running action, else its last one.
    pub fn last(&self, project: &str) -> Option<Arc<Action>> {
        let inner = lock(&self.inner);
        let id = inner.running.get(project).or(inner.last.get(project))?;
        inner.by_id.get(id).cloned()
    }

    /// The project's feed, and (subscribed at the same moment, so no line
    /// falls between) its running or last action to replay first.
    pub fn watch(
        &self,
        project: &str,
    ) -> (Option<ActionStatus>, broadcast::Receiver<ProjectEvent>) {
        let mut inner = lock(&self.inner);
        let rx = inner.feed(project).subscribe();
        let last = inner
            .running
            .get(project)
            .or(inner.last.get(project))
            .and_then(|id| inner.by_id.get(id))
            .map(|a| a.status());
        (last, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, project: &str) -> ActionStatus {
        ActionStatus {
            id: id.into(),
            project: project.into(),
            kind: "up".into(),
            command: "docker compose up --detach".into(),
            state: ActionState::Running,
            exit_code: None,
            started_at_ms: 0,
            finished_at_ms: None,
            started_by: None,
            lines: Vec::new(),
            lines_dropped: 0,
        }
    }

    #[test]
    fn one_action_per_project_and_late_joiners_get_the_last_lines() {
        let a = Actions::default();
        let first = a.begin(status("1", "web")).unwrap();
        assert_eq!(a.begin(status("2", "web")).unwrap_err(), "1");
        // Another project is free.
        a.begin(status("3", "db")).unwrap();
        for i in 0..(KEPT_LINES + 5) {
            a.line(&first, format!("line {i}"));
        }
        let (replay, mut rx) = a.watch("web");
        let replay = replay.unwrap();
        assert_eq!(replay.lines.len(), KEPT_LINES);
        assert_eq!(replay.lines_dropped, 5);
        assert_eq!(replay.lines[0], "line 5");
        let done = a.finish(&first, ActionState::Succeeded, Some(0));
        assert_eq!(done.state, ActionState::Succeeded);
        match rx.try_recv().unwrap() {
            ProjectEvent::Finished(s) => assert_eq!(s.id, "1"),
            other => panic!("{other:?}"),
        }
        // Free again once finished.
        a.begin(status("4", "web")).unwrap();
        assert_eq!(a.last("web").unwrap().brief().id, "4");
    }
}
