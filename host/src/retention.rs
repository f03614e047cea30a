//! Retention: the audit log is kept for `retention.audit_max_age` and at
//! most `retention.audit_max_entries` entries, pruned in the background in
//! batches of a few hundred rows (each its own short statement, with a
//! pause between, so requests that write audit entries never wait long).
//!
//! The wake plugin keeps its own history in its storage, capped at 20
//! wakes per service; it needs no pruning here.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::db::{audit, now_ms, Db, DbError};

/// Rows deleted per statement.
pub const BATCH: i64 = 500;
/// Pause between two batches.
const PAUSE: Duration = Duration::from_millis(20);
/// How often the retention limits are checked.
const EVERY: Duration = Duration::from_secs(60);

/// Deletes everything past retention, batch by batch, until nothing is
/// left or `shutdown`. Returns the number deleted.
pub async fn prune_audit(
    db: &Db,
    limits: &RetentionConfig,
    shutdown: &CancellationToken,
) -> Result<u64, DbError> {
    let age = limits.audit_max_age.get();
    let older_than = (!age.is_zero()).then(|| now_ms() - age.as_millis() as i64);
    let max_entries = (limits.audit_max_entries > 0)
        .then(|| i64::try_from(limits.audit_max_entries).unwrap_or(i64::MAX));
    let mut total = 0u64;
    loop {
        let n = db
            .run(move |c| audit::prune_batch(c, older_than, max_entries, BATCH))
            .await?;
        total += n as u64;
        if (n as i64) < BATCH || shutdown.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Every minute: prune the audit log and refresh the database-size gauge.
pub async fn run(state: crate::AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match prune_audit(&state.db, &state.config.retention, &shutdown).await {
            Ok(0) => {}
            Ok(n) => {
                state.metrics.data.audit_pruned.inc_by(n);
                tracing::info!(deleted = n, "pruned the audit log (retention)");
            }
            Err(e) => tracing::warn!(error = %e, "pruning the audit log"),
        }
        state.metrics.data.refresh_size(&state.db).await;
    }
}
