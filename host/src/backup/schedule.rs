//! The backup directory: backups taken on a schedule (`backup.interval`)
//! or on demand (API, UI, `wakedock backup`), the newest `backup.keep`
//! kept, listed for the UI and the API.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{BackupSummary, Sources};
use crate::config::BackupConfig;
use crate::db::Db;

/// Backup files are named `wakedock-backup-<UTC time>.jsonl.gz`.
pub const PREFIX: &str = "wakedock-backup-";
pub const SUFFIX: &str = ".jsonl.gz";

/// A backup file in the directory.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupFile {
    pub name: String,
    pub size_bytes: u64,
    /// Unix milliseconds (the file's modification time: when it was
    /// completed).
    pub created_at: i64,
}

/// The outcome of the last backup this host took.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastBackup {
    /// Unix milliseconds.
    pub at: i64,
    /// `success` or `failure`.
    #[schema(pattern = "^(success|failure)$")]
    pub result: String,
    pub name: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// The host's backups: where they go, how many to keep, one at a time.
#[derive(Debug)]
pub struct Backups {
    pub dir: PathBuf,
    pub keep: usize,
    pub interval: Option<Duration>,
    sources: Sources,
    /// Held while a backup is being written (one at a time).
    running: tokio::sync::Mutex<()>,
    last: Mutex<Option<LastBackup>>,
    metrics: Option<crate::metrics::DataMetrics>,
}

/// Whether `name` is a backup file name (nothing else is served).
pub fn is_backup_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .is_some_and(|stamp| {
            !stamp.is_empty()
                && stamp
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, 'T' | 'Z' | '-'))
        })
}

/// A new file name for a backup taken at `at` (Unix ms), unique in `dir`.
pub fn new_name(dir: &Path, at: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_millis(at)
        .to_string()
        .replace([':', '-', '.'], "");
    let mut name = format!("{PREFIX}{stamp}{SUFFIX}");
    let mut n = 2;
    while dir.join(&name).exists() {
        name = format!("{PREFIX}{stamp}-{n}{SUFFIX}");
        n += 1;
    }
    name
}

impl Backups {
    pub fn new(config: &BackupConfig, data_path: &Path, jwt_secret_in_config: bool) -> Self {
        Self {
            dir: config.directory(data_path),
            keep: config.keep,
            interval: config.interval.map(|d| d.get()),
            sources: Sources {
                data_path: data_path.to_path_buf(),
                jwt_secret_in_config,
            },
            running: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
            metrics: None,
        }
    }

    /// Reports each backup in these metrics.
    pub fn with_metrics(mut self, metrics: crate::metrics::DataMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn set_last(&self, last: LastBackup) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
    }

    pub fn last(&self) -> Option<LastBackup> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The backup files, newest first.
    pub fn list(&self) -> std::io::Result<Vec<BackupFile>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !is_backup_name(&name) {
                continue;
            }
            let meta = entry.metadata()?;
            let created_at = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            out.push(BackupFile {
                name,
                size_bytes: meta.len(),
                created_at,
            });
        }
        out.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(out)
    }

    /// The path of backup `name`, if it is one and exists.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir.join(name);
        (is_backup_name(name) && path.is_file()).then_some(path)
    }

    /// Takes a backup now (waiting for one in progress to finish first),
    /// then deletes the oldest beyond `keep`.
    pub async fn take(&self, db: &Db) -> anyhow::Result<BackupSummary> {
        let _one = self.running.lock().await;
        let started = std::time::Instant::now();
        let name = new_name(&self.dir, SystemTime::now());
        let result = super::create(db, &self.sources, &self.dir.join(&name)).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(s) => {
                tracing::info!(
                    file = %s.path, size_bytes = s.size_bytes, duration_ms, "backup written"
                );
                self.set_last(LastBackup {
                    at: s.created_at,
                    result: "success".into(),
                    name: Some(name.clone()),
                    error: None,
                    duration_ms,
                });
                if let Some(m) = &self.metrics {
                    m.backup_last_success.set(s.created_at / 1000);
                    m.backup_last_size.set(s.size_bytes as i64);
                }
                self.prune();
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "backup failed");
                if let Some(m) = &self.metrics {
                    m.backups_failed.inc();
                }
                self.set_last(LastBackup {
                    at: crate::db::now_ms(),
                    result: "failure".into(),
                    name: None,
                    error: Some(format!("{e:#}")),
                    duration_ms,
                });
            }
        }
        result.map(|s| BackupSummary { path: name, ..s })
    }

    /// Deletes the oldest backups beyond `keep`, and the `.partial` files
    /// of backups that never finished (the host stopped in the middle;
    /// called with the one-at-a-time lock held, so none is being written).
    fn prune(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.strip_suffix(".partial").is_some_and(is_backup_name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let Ok(list) = self.list() else { return };
        for old in list.iter().skip(self.keep) {
            match std::fs::remove_file(self.dir.join(&old.name)) {
                Ok(()) => {
                    tracing::info!(file = %old.name, keep = self.keep, "deleted an old backup")
                }
                Err(e) => {
                    tracing::warn!(file = %old.name, error = %e, "could not delete an old backup")
                }
            }
        }
    }

    /// Takes a backup every `interval` until `shutdown`. The first one is
    /// due `interval` after the newest backup in the directory (at once if
    /// that is already past), so restarts neither skip nor double them.
    pub async fn run(self: std::sync::Arc<Self>, db: Db, shutdown: CancellationToken) {
        let Some(interval) = self.interval else {
            // Nothing scheduled. Returning would read as a crash to the
            // supervisor, which restarts the task (and warns) in a loop.
            shutdown.cancelled().await;
            return;
        };
        loop {
            let newest = self
                .list()
                .ok()
                .and_then(|l| l.first().map(|b| b.created_at));
            let since = newest.map_or(interval, |at| {
                Duration::from_millis((crate::db::now_ms() - at).max(0) as u64)
            });
            let wait = interval.saturating_sub(since);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.take(&db) => {
                    if r.is_err() {
                        // Do not retry in a tight loop: wait a tenth of the
                        // interval (at least a minute).
                        let pause = (interval / 10).max(Duration::from_secs(60));
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(pause) => {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_schedule_the_task_waits_for_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let backups = std::sync::Arc::new(Backups::new(
            &crate::config::BackupConfig::default(),
            dir.path(),
            true,
        ));
        let db = crate::db::testing::sqlite().await;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(backups.run(db.db.clone(), shutdown.clone()));
        // Still running a while later (it used to end at once) ...
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!task.is_finished(), "ended without a shutdown");
        // ... and ends on shutdown.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("ends on shutdown")
            .unwrap();
    }

    #[test]
    fn names_are_sortable_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        let a = new_name(dir.path(), t);
        assert!(is_backup_name(&a), "{a}");
        assert!(a.starts_with("wakedock-backup-2026"), "{a}");
        std::fs::write(dir.path().join(&a), b"x").unwrap();
        let b = new_name(dir.path(), t);
        assert_ne!(a, b);
        assert!(is_backup_name(&b), "{b}");
        // A backup cut off by a stop leaves a `.partial`: not listed, and
        // removed by the next backup's pruning.
        let backups = Backups::new(
            &crate::config::BackupConfig {
                directory: Some(dir.path().to_path_buf()),
                ..Default::default()
            },
            dir.path(),
            true,
        );
        std::fs::write(dir.path().join(format!("{b}.partial")), b"half").unwrap();
        assert_eq!(backups.list().unwrap().len(), 1);
        backups.prune();
        assert!(!dir.path().join(format!("{b}.partial")).exists());
        assert!(dir.path().join(&a).exists());
        for bad in [
            "../x",
            "wakedock-backup-.jsonl.gz",
            "wakedock-backup-1/../x.jsonl.gz",
            "x.jsonl.gz",
        ] {
            assert!(!is_backup_name(bad), "{bad}");
        }
    }
}
