//! Backup and restore: everything WakeDock needs to come back, in one
//! backend-neutral file (see [`format`]).
//!
//! A backup holds every table (users, refresh tokens, settings, installed
//! plugins with their grants and config, plugin storage — where the wake
//! plugin keeps sessions, wake history and API-defined services — and the
//! audit log), the installed plugin components, and the generated JWT
//! secret. It is read from one consistent snapshot
//! ([`DbConnection::read_snapshot`]) while the server keeps serving: the
//! snapshot blocks no writer on any backend.
//!
//! A restore checks the whole file first (format version, checksum,
//! counts, every row), then the target (an empty database and data
//! directory), and only then writes: all rows in one transaction, the
//! files staged and moved into place after it commits. Because rows are
//! JSON, a backup taken on one backend restores into any other.

pub mod cli;
pub mod format;
pub mod schedule;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::audit::AuditEntry;
use crate::db::plugin_kv::KvRow;
use crate::db::plugins::PluginRow;
use crate::db::schema;
use crate::db::settings::SettingRow;
use crate::db::tokens::RefreshTokenRow;
use crate::db::users::UserRow;
use crate::db::{now_ms, Db, DbConnection, DbError};
use format::{FormatError, Header, Record, FORMAT_NAME, FORMAT_VERSION};

/// Tables in the order they are written and restored (parents first).
pub const TABLES: [&str; 6] = [
    "users",
    "refresh_tokens",
    "settings",
    "plugins",
    "plugin_kv",
    "audit_log",
];

/// Audit rows read per query inside the snapshot.
const PAGE: i64 = 2000;

/// What a finished backup is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupSummary {
    /// File name (in the backup directory) or path.
    pub path: String,
    pub size_bytes: u64,
    /// Unix milliseconds of the snapshot.
    pub created_at: i64,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Files (plugin components, the JWT secret).
    pub files: u64,
    /// SHA-256 of the content (the trailer's).
    pub sha256: String,
    pub duration_ms: u64,
}

/// Where a backup reads files from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub data_path: PathBuf,
    /// The JWT secret comes from the config file (not backed up).
    pub jwt_secret_in_config: bool,
}

/// Takes a backup of `db` and the data directory into `out` (written as
/// `out.partial`, renamed when complete; mode 0600: it holds password
/// hashes and the JWT secret).
pub async fn create(db: &Db, sources: &Sources, out: &Path) -> anyhow::Result<BackupSummary> {
    let started = Instant::now();
    let schema_version = db.schema_version().await?;
    let header = Header {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        wakedock_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        backend: db.backend().into(),
        created_at: now_ms(),
        jwt_secret_included: false,
    };
    let secret_file = sources.data_path.join(crate::secrets::JWT_SECRET_FILE);
    let secret = if sources.jwt_secret_in_config {
        None
    } else {
        match std::fs::read(&secret_file) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context(format!("reading {}", secret_file.display())),
        }
    };
    let header = Header {
        jwt_secret_included: secret.is_some(),
        ..header
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_files::create_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = partial_path(out);
    let _ = std::fs::remove_file(&partial);
    crate::private_files::create_file(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&partial)
        .with_context(|| format!("opening {}", partial.display()))?;
    let created_at = header.created_at;
    let written = db
        .run(move |conn| {
            let mut w =
                format::Writer::new(std::io::BufWriter::new(file), &header).map_err(io_err)?;
            conn.read_snapshot(|c| write_tables(c, &mut w))?;
            if let Some(secret) = secret {
                w.file(crate::secrets::JWT_SECRET_FILE, &secret)
                    .map_err(io_err)?;
            }
            let (buf, trailer): (std::io::BufWriter<std::fs::File>, _) =
                w.finish().map_err(io_err)?;
            let file = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
            file.sync_all().map_err(io_err)?;
            Ok(trailer)
        })
        .await;
    let trailer = match written {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e).context("taking the backup");
        }
    };
    std::fs::rename(&partial, out).with_context(|| format!("renaming to {}", out.display()))?;
    let size_bytes = std::fs::metadata(out)?.len();
    Ok(BackupSummary {
        path: out.display().to_string(),
        size_bytes,
        created_at,
        rows: trailer.rows,
        files: trailer.files,
        sha256: trailer.sha256,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn io_err(e: std::io::Error) -> DbError {
    DbError::Other(anyhow::Error::new(e).context("writing the backup"))
}

/// Writes every table (inside the caller's snapshot) and the plugin
/// components the snapshot's plugin rows name.
fn write_tables<W: std::io::Write>(
    c: &mut DbConnection,
    w: &mut format::Writer<W>,
) -> Result<(), DbError> {
    use schema::{audit_log, plugin_kv, plugins, refresh_tokens, settings, users};
    for row in users::table
        .order(users::id)
        .select(UserRow::as_select())
        .load(c)?
    {
        w.row("users", &row).map_err(io_err)?;
    }
    for row in refresh_tokens::table
        .order(refresh_tokens::id)
        .select(RefreshTokenRow::as_select())
        .load(c)?
    {
        w.row("refresh_tokens", &row).map_err(io_err)?;
    }
    for row in settings::table
        .order(settings::key)
        .select(SettingRow::as_select())
        .load(c)?
    {
        w.row("settings", &row).map_err(io_err)?;
    }
    let plugin_rows = plugins::table
        .order(plugins::name)
        .select(PluginRow::as_select())
        .load(c)?;
    for row in &plugin_rows {
        w.row("plugins", row).map_err(io_err)?;
    }
    for row in plugin_kv::table
        .order((plugin_kv::plugin, plugin_kv::key))
        .select(KvRow::as_select())
        .load(c)?
    {
        w.row("plugin_kv", &row).map_err(io_err)?;
    }
    let mut after = i64::MIN;
    loop {
        let page = audit_log::table
            .filter(audit_log::id.gt(after))
            .order(audit_log::id)
            .limit(PAGE)
            .select(AuditEntry::as_select())
            .load(c)?;
        for row in &page {
            w.row("audit_log", row).map_err(io_err)?;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => after = last.id,
            _ => break,
        }
    }
    // The components the rows name, checked against their SHA-256 (a
    // plugin upgraded during the backup still has its old file until the
    // upgrade commits, and the snapshot is from before it).
    for row in &plugin_rows {
        let bytes = wakedock_plugin_runtime::read_verified(Path::new(&row.wasm_path), &row.wasm_sha256)
            .map_err(|e| {
                DbError::Other(anyhow::anyhow!(
                    "plugin {}'s component: {e} (was it upgraded or removed during the backup? take it again)",
                    row.name
                ))
            })?;
        w.file(&plugin_file(&row.name, &row.wasm_sha256), &bytes)
            .map_err(io_err)?;
    }
    Ok(())
}

/// Where a plugin's component goes, relative to the data directory.
fn plugin_file(name: &str, sha: &str) -> String {
    format!("plugins/{name}/{sha}.wasm")
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub header: Header,
    pub rows: BTreeMap<String, u64>,
    pub files: u64,
    pub backend: &'static str,
    pub duration_ms: u64,
}

/// A row of a backup, parsed into its table's type.
enum Row {
    User(UserRow),
    Token(RefreshTokenRow),
    Setting(SettingRow),
    Plugin(PluginRow),
    Kv(KvRow),
    Audit(AuditEntry),
}

fn parse_row(table: &str, row: &serde_json::Value) -> Result<Row, String> {
    let v = row.clone();
    let r = match table {
        "users" => serde_json::from_value(v).map(Row::User),
        "refresh_tokens" => serde_json::from_value(v).map(Row::Token),
        "settings" => serde_json::from_value(v).map(Row::Setting),
        "plugins" => serde_json::from_value(v).map(Row::Plugin),
        "plugin_kv" => serde_json::from_value(v).map(Row::Kv),
        "audit_log" => serde_json::from_value(v).map(Row::Audit),
        other => return Err(format!("unknown table {other:?}")),
    };
    r.map_err(|e| format!("a {table} row: {e}"))
}

/// The data-directory path a file record may have: the JWT secret, or a
/// plugin component `plugins/<name>/<sha>.wasm` (nothing that escapes).
fn check_file_path(path: &str) -> Result<(), String> {
    if path == crate::secrets::JWT_SECRET_FILE {
        return Ok(());
    }
    let parts: Vec<&str> = path.split('/').collect();
    let ok = matches!(parts.as_slice(), ["plugins", name, file]
        if !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && file.strip_suffix(".wasm").is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())));
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected file {path:?}"))
    }
}

fn decode(data: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("a file's content: {e}"))
}

/// Reads the whole file and checks every record without writing anything.
pub fn verify(file: &Path) -> Result<(Header, format::Trailer), FormatError> {
    let f = std::fs::File::open(file)?;
    format::read(f, |rec| {
        let bad = |reason: String| FormatError::Damaged { line: 0, reason };
        match rec {
            Record::Row { table, row } => parse_row(table, row).map(drop).map_err(bad),
            Record::File { path, data } => {
                check_file_path(path).map_err(bad)?;
                decode(data).map(drop).map_err(bad)
            }
            _ => Ok(()),
        }
    })
}

/// Where a restore writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub database_url: String,
    pub data_path: PathBuf,
}

/// Restores `file` into an empty database and data directory.
pub async fn restore(file: &Path, target: &Target) -> anyhow::Result<RestoreSummary> {
    let started = Instant::now();
    // 1. The file, whole, before anything else.
    let (header, trailer) = verify(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    // 2. The target.
    let secret_path = target.data_path.join(crate::secrets::JWT_SECRET_FILE);
    if header.jwt_secret_included && secret_path.exists() {
        bail!(
            "{} already exists: restore into an empty data directory (nothing was written)",
            secret_path.display()
        );
    }
    let plugins_dir = target.data_path.join("plugins");
    if std::fs::read_dir(&plugins_dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty: restore into an empty data directory (nothing was written)",
            plugins_dir.display()
        );
    }
    crate::private_files::create_dir(&target.data_path)
        .with_context(|| format!("creating {}", target.data_path.display()))?;
    let db = Db::connect(&target.database_url, Some(1))
        .await
        .context("connecting to the target database")?;
    let known = db.known_migrations();
    if known
        .last()
        .is_some_and(|newest| header.schema_version.as_str() > newest.as_str())
    {
        bail!(
            "{}: the backup's database schema ({}) is newer than this WakeDock knows ({}): \
             restore it with WakeDock {} or newer (nothing was written)",
            file.display(),
            header.schema_version,
            known.last().map_or("none", String::as_str),
            header.wakedock_version
        );
    }
    db.migrate()
        .await
        .context("preparing the target database")?;
    let counts = db.run(table_counts).await?;
    if let Some((table, n)) = counts.iter().find(|(_, n)| **n > 0) {
        bail!(
            "the target database is not empty ({table} has {n} rows): restore into an empty \
             database (nothing was written)"
        );
    }
    // 3. Files staged, rows in one transaction, files moved in after it.
    let staging = target
        .data_path
        .join(format!(".restore-{}", uuid::Uuid::new_v4().simple()));
    crate::private_files::create_dir(&staging)?;
    let f = std::fs::File::open(file)?;
    let stage = staging.clone();
    let data_path = target.data_path.clone();
    let inserted = db
        .run(move |c| c.write_transaction(|c| insert_all(c, f, &stage, &data_path)))
        .await;
    let staged = match inserted {
        Ok(staged) => staged,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(anyhow::Error::new(e).context("restoring (nothing was written)"));
        }
    };
    for rel in &staged {
        let to = target.data_path.join(rel);
        if let Some(dir) = to.parent() {
            crate::private_files::create_dir(dir)?;
        }
        std::fs::rename(staging.join(rel), &to)
            .with_context(|| format!("moving {} into place", to.display()))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(RestoreSummary {
        header,
        rows: trailer.rows,
        files: trailer.files,
        backend: db.backend(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Rows in each table.
pub fn table_counts(c: &mut DbConnection) -> Result<BTreeMap<String, i64>, DbError> {
    use schema::{audit_log, plugin_kv, plugins, refresh_tokens, settings, users};
    let mut out = BTreeMap::new();
    out.insert("users".into(), users::table.count().get_result(c)?);
    out.insert(
        "refresh_tokens".into(),
        refresh_tokens::table.count().get_result(c)?,
    );
    out.insert("settings".into(), settings::table.count().get_result(c)?);
    out.insert("plugins".into(), plugins::table.count().get_result(c)?);
    out.insert("plugin_kv".into(), plugin_kv::table.count().get_result(c)?);
    out.insert("audit_log".into(), audit_log::table.count().get_result(c)?);
    Ok(out)
}

/// Rows buffered for one batched insert.
const BATCH: usize = 500;

/// Inserts every row of the file (inside the caller's transaction) and
/// writes its files under `stage`; returns the staged files' relative
/// paths.
fn insert_all(
    c: &mut DbConnection,
    file: std::fs::File,
    stage: &Path,
    data_path: &Path,
) -> Result<Vec<PathBuf>, DbError> {
    let mut pending: Vec<Row> = Vec::new();
    let mut staged = Vec::new();
    let mut failure: Option<DbError> = None;
    let plugins_dir = data_path.join("plugins");
    let read = format::read(file, |rec| {
        let fail = |e: DbError, failure: &mut Option<DbError>| {
            let reason = e.to_string();
            *failure = Some(e);
            FormatError::Damaged { line: 0, reason }
        };
        match rec {
            Record::Row { table, row } => {
                let mut row = parse_row(table, row)
                    .map_err(|reason| FormatError::Damaged { line: 0, reason })?;
                if let Row::Plugin(p) = &mut row {
                    // The component's new home.
                    p.wasm_path = crate::plugins::wasm_path(&plugins_dir, &p.name, &p.wasm_sha256)
                        .display()
                        .to_string();
                }
                let same_table = pending.last().is_none_or(|last| {
                    std::mem::discriminant(last) == std::mem::discriminant(&row)
                });
                if !same_table || pending.len() >= BATCH {
                    flush(c, &mut pending).map_err(|e| fail(e, &mut failure))?;
                }
                pending.push(row);
            }
            Record::File { path, data } => {
                let bytes =
                    decode(data).map_err(|reason| FormatError::Damaged { line: 0, reason })?;
                let rel = PathBuf::from(path);
                let to = stage.join(&rel);
                if let Some(dir) = to.parent() {
                    crate::private_files::create_dir(dir)?;
                }
                write_private(&to, &bytes)?;
                staged.push(rel);
            }
            _ => {}
        }
        Ok(())
    });
    if let Err(e) = read {
        return Err(failure.unwrap_or_else(|| DbError::Other(e.into())));
    }
    flush(c, &mut pending)?;
    if let DbConnection::Postgres(pg) = c {
        // Explicit ids do not move PostgreSQL's sequence (SQLite and
        // InnoDB follow the largest id inserted by themselves).
        diesel::sql_query(
            "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), \
             COALESCE((SELECT MAX(id) FROM audit_log), 0) + 1, false)",
        )
        .execute(pg)?;
    }
    Ok(staged)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Inserts the buffered rows (all of one table) in one statement.
fn flush(c: &mut DbConnection, pending: &mut Vec<Row>) -> Result<(), DbError> {
    use schema::{audit_log, plugin_kv, plugins, refresh_tokens, settings, users};
    macro_rules! insert {
        ($table:expr, $variant:ident) => {{
            let rows: Vec<_> = pending
                .drain(..)
                .filter_map(|r| match r {
                    Row::$variant(x) => Some(x),
                    _ => None,
                })
                .collect();
            // Multi-row inserts exist per backend, not through the
            // multi-backend connection.
            let insert = diesel::insert_into($table).values(&rows);
            match c {
                DbConnection::Sqlite(c) => insert.execute(c)?,
                DbConnection::Postgres(c) => insert.execute(c)?,
                DbConnection::Mysql(c) => insert.execute(c)?,
            };
        }};
    }
    match pending.first() {
        None => return Ok(()),
        Some(Row::User(_)) => insert!(users::table, User),
        Some(Row::Token(_)) => insert!(refresh_tokens::table, Token),
        Some(Row::Setting(_)) => insert!(settings::table, Setting),
        Some(Row::Plugin(_)) => insert!(plugins::table, Plugin),
        Some(Row::Kv(_)) => insert!(plugin_kv::table, Kv),
        Some(Row::Audit(_)) => insert!(audit_log::table, Audit),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
