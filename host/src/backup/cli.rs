//! `wakedock backup` and `wakedock restore`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::schedule::Backups;
use crate::config::Config;
use crate::db::Db;

/// Takes a backup straight from the database and the data directory; a
/// running server goes on serving.
pub async fn backup(config: &Config, output: Option<PathBuf>) -> anyhow::Result<()> {
    let db = Db::connect(&config.database_url(), Some(1))
        .await
        .context("connecting to the database")?;
    let data = &config.wakedock.data_path;
    let jwt_in_config = config.security.jwt_secret.is_some();
    let summary = match output {
        Some(out) => {
            let sources = super::Sources {
                data_path: data.clone(),
                jwt_secret_in_config: jwt_in_config,
            };
            super::create(&db, &sources, &out).await?
        }
        None => {
            let backups = Backups::new(&config.backup, data, jwt_in_config);
            let s = backups.take(&db).await?;
            super::BackupSummary {
                path: backups.dir.join(&s.path).display().to_string(),
                ..s
            }
        }
    };
    let rows: Vec<String> = summary
        .rows
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!(
        "wrote {} ({} bytes in {} ms): {}; {} files; sha256 {}",
        summary.path,
        summary.size_bytes,
        summary.duration_ms,
        rows.join(", "),
        summary.files,
        summary.sha256
    );
    if jwt_in_config {
        println!(
            "note: the JWT secret is set in the configuration, not in the backup: keep the config"
        );
    }
    Ok(())
}

/// Restores into the configured database and data directory, which must
/// be empty.
pub async fn restore(config: &Config, file: &Path) -> anyhow::Result<()> {
    let target = super::Target {
        database_url: config.database_url(),
        data_path: config.wakedock.data_path.clone(),
    };
    let s = super::restore(file, &target).await?;
    let rows: Vec<String> = s.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!(
        "restored {} (taken {} from {} by WakeDock {}) into {} in {} ms: {}; {} files",
        file.display(),
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(s.header.created_at as u64)
        ),
        s.header.backend,
        s.header.wakedock_version,
        s.backend,
        s.duration_ms,
        rows.join(", "),
        s.files
    );
    Ok(())
}
