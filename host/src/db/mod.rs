//! The database: SQLite (embedded default) or PostgreSQL, chosen by the URL
//! alone, behind one connection type.
//!
//! Diesel is synchronous, so every query runs on tokio's blocking pool
//! through [`Db::run`]; a tokio worker never waits on the database.

pub mod audit;
pub mod plugin_kv;
pub mod plugins;
pub mod schema;
pub mod settings;
pub mod tokens;
pub mod users;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, R2D2Connection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// One connection to either backend. Queries written with diesel's DSL run
/// unchanged on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl DbConnection {
    /// Runs `f` in a transaction that writes. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`): a deferred transaction that reads
    /// and then writes cannot wait for another writer (its snapshot is
    /// stale), so SQLite fails it at once with "database is locked" instead
    /// of applying the busy timeout. On PostgreSQL it is an ordinary
    /// transaction. Nested calls become savepoints.
    pub fn write_transaction<T, F>(&mut self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, DbError>,
    {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let DbConnection::Sqlite(sqlite) = self else {
            return self.transaction(f);
        };
        if AnsiTransactionManager::transaction_manager_status_mut(sqlite)
            .transaction_depth()?
            .is_some()
        {
            // Already inside one: a savepoint, the lock is held.
            return self.transaction(f);
        }
        AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        let result = f(self);
        let DbConnection::Sqlite(sqlite) = self else {
            unreachable!("the connection does not change backend")
        };
        match result {
            Ok(v) => {
                AnsiTransactionManager::commit_transaction(sqlite)?;
                Ok(v)
            }
            // As diesel's own `transaction`: the caller's error wins over
            // a failed rollback, unless the connection is left unusable.
            Err(e) => match AnsiTransactionManager::rollback_transaction(sqlite) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(e),
                Err(rollback) => Err(rollback.into()),
            },
        }
    }
}

/// Whether a database error is lock contention (SQLite's busy timeout ran
/// out, or PostgreSQL gave up on a lock or serialization): the request may
/// be retried, so it is answered 503 with `Retry-After`, never 500.
pub fn is_contention(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(_, info) => {
            let m = info.message();
            m.contains("database is locked")
                || m.contains("database table is locked")
                || m.contains("database is busy")
                || m.contains("deadlock detected")
                || m.contains("could not obtain lock")
        }
        _ => false,
    }
}

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A file path (`sqlite://./data/wakedock.db` → `./data/wakedock.db`).
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://./data/wakedock.db".into());
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        Err(format!(
            "unsupported database URL {:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
            redact(url)
        ))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => url.to_string(),
    }
}

/// Database failures, split so the API can answer 503 when the database is
/// down and 500 when a query is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Opens connections for the pool and prepares each new SQLite connection.
#[derive(Debug, Clone)]
struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the writer; the busy timeout makes
                // concurrent writers wait instead of failing with SQLITE_BUSY.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// The connection pool, cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    url: DatabaseUrl,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.url.backend())
            .finish()
    }
}

impl Db {
    /// Connects (creating the SQLite file and its directory if needed).
    pub async fn connect(url: &str, pool_size: Option<u32>) -> Result<Self, DbError> {
        let url = DatabaseUrl::parse(url).map_err(|e| DbError::Other(anyhow::anyhow!(e)))?;
        if let DatabaseUrl::Sqlite(path) = &url {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::private_files::create_dir(dir).map_err(|e| {
                    DbError::Other(anyhow::anyhow!(
                        "cannot create database directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
            // Created 0600 before SQLite opens it; SQLite gives the -wal
            // and -shm files the database file's mode.
            crate::private_files::create_file(path).map_err(|e| {
                DbError::Other(anyhow::anyhow!(
                    "cannot create database file {}: {e}",
                    path.display()
                ))
            })?;
        }
        let size = pool_size.unwrap_or(match url {
            // SQLite has one writer; a few readers are plenty.
            DatabaseUrl::Sqlite(_) => 4,
            DatabaseUrl::Postgres(_) => 8,
        });
        let manager = Manager { url: url.clone() };
        let pool = tokio::task::spawn_blocking(move || {
            Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(5))
                .build(manager)
        })
        .await
        .map_err(|e| DbError::Other(e.into()))?
        .map_err(|e| DbError::Unavailable(e.into()))?;
        Ok(Self { pool, url })
    }

    pub fn backend(&self) -> &'static str {
        self.url.backend()
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Other(e.into()))?
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        self.run(|conn| {
            let applied = match conn {
                DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
                DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
            }
            .map_err(|e| DbError::Other(anyhow::anyhow!("migration failed: {e}")))?;
            Ok(applied.iter().map(|v| v.to_string()).collect())
        })
        .await
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| conn.ping().map_err(|e| DbError::Unavailable(e.into())))
            .await
    }
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Test databases: every DB test runs against SQLite and PostgreSQL.
    use super::*;

    /// A database that is dropped (PostgreSQL) or deleted (SQLite) with it.
    pub struct TestDb {
        pub db: Db,
        _dir: Option<tempfile::TempDir>,
        pg: Option<(String, String)>,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Some((admin_url, name)) = self.pg.take() {
                if let Ok(mut c) = PgConnection::establish(&admin_url) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }

    /// The PostgreSQL server the test setup started; its absence is an
    /// error, not a skip, so a missing install step cannot pass silently.
    pub fn pg_admin_url() -> String {
        std::env::var("WAKEDOCK_TEST_PG_URL").expect(
            "WAKEDOCK_TEST_PG_URL is not set: run the tests through scripts/test.sh, \
             which starts PostgreSQL (every DB test runs against SQLite and PostgreSQL)",
        )
    }

    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, None).await.unwrap();
        db.migrate().await.unwrap();
        TestDb {
            db,
            _dir: Some(dir),
            pg: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let admin_url = pg_admin_url();
        let name = format!("wd_test_{}", uuid::Uuid::new_v4().simple());
        let mut c = PgConnection::establish(&admin_url).expect("connect to test PostgreSQL");
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let db = Db::connect(&format!("{base}/{name}"), Some(4))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        TestDb {
            db,
            _dir: None,
            pg: Some((admin_url, name)),
        }
    }

    /// Both backends, for tests that loop over them.
    pub async fn both() -> Vec<TestDb> {
        vec![sqlite().await, postgres().await]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/x.db").unwrap(),
            DatabaseUrl::Sqlite("./data/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://u:p@h/d")
                .unwrap()
                .backend(),
            "postgres"
        );
        let err = DatabaseUrl::parse("mysql://u:secret@h/d").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    /// The database, its -wal and its -shm are readable by the owner only.
    #[tokio::test]
    async fn sqlite_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = testing::sqlite().await;
        t.db.run(|c| crate::db::settings::set(c, "k", "v"))
            .await
            .unwrap();
        let DatabaseUrl::Sqlite(path) = &t.db.url else {
            unreachable!()
        };
        for f in crate::private_files::sqlite_files(path) {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }

    #[tokio::test]
    async fn migrations_apply_once_on_both_backends() {
        for t in testing::both().await {
            t.db.ping().await.unwrap();
            // Already applied by the helper: a second run applies nothing.
            assert!(
                t.db.migrate().await.unwrap().is_empty(),
                "{}",
                t.db.backend()
            );
        }
    }
}
