//! The database: SQLite (embedded default), PostgreSQL or MySQL/MariaDB,
//! chosen by the URL alone, behind one connection type.
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
use diesel::{MysqlConnection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/mysql");

/// One connection to any of the backends. Queries written with diesel's
/// DSL run unchanged on all three.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
    Mysql(MysqlConnection),
}

impl DbConnection {
    /// Runs `f` in a transaction that writes. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`): a deferred transaction that reads
    /// and then writes cannot wait for another writer (its snapshot is
    /// stale), so SQLite fails it at once with "database is locked" instead
    /// of applying the busy timeout. On PostgreSQL and MySQL it is an
    /// ordinary transaction. Nested calls become savepoints.
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

    /// Runs `f` in a read-only transaction that sees one consistent
    /// snapshot of the whole database, without blocking writers: SQLite's
    /// WAL reader (the snapshot is fixed by the first read), PostgreSQL's
    /// `REPEATABLE READ READ ONLY`, InnoDB's `WITH CONSISTENT SNAPSHOT`.
    /// Used by backups.
    pub fn read_snapshot<T, F>(&mut self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, DbError>,
    {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        fn begin<C>(c: &mut C, sql: &str) -> Result<(), DbError>
        where
            C: diesel::Connection<TransactionManager = AnsiTransactionManager>,
        {
            AnsiTransactionManager::begin_transaction_sql(c, sql)?;
            Ok(())
        }
        fn end<C>(c: &mut C, commit: bool) -> Result<(), DbError>
        where
            C: diesel::Connection<TransactionManager = AnsiTransactionManager>,
        {
            if commit {
                AnsiTransactionManager::commit_transaction(c)?;
            } else {
                AnsiTransactionManager::rollback_transaction(c)?;
            }
            Ok(())
        }
        match self {
            DbConnection::Sqlite(c) => begin(c, "BEGIN DEFERRED")?,
            DbConnection::Postgres(c) => {
                begin(c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?
            }
            DbConnection::Mysql(c) => {
                c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
                begin(c, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")?
            }
        }
        let result = f(self);
        let ok = result.is_ok();
        let closed = match self {
            DbConnection::Sqlite(c) => end(c, ok),
            DbConnection::Postgres(c) => end(c, ok),
            DbConnection::Mysql(c) => end(c, ok),
        };
        match (result, closed) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
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
                // MySQL/MariaDB (InnoDB).
                || m.contains("Deadlock found")
                || m.contains("Lock wait timeout exceeded")
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
    /// `mysql://user:password@host[:port]/db` (MySQL or MariaDB).
    Mysql(String),
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
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            // libmysqlclient knows only the `mysql` scheme.
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            return Ok(Self::Mysql(format!("mysql://{rest}")));
        }
        Err(format!(
            "unsupported database URL {:?}: use sqlite://PATH, postgres://USER:PASSWORD@HOST/DB \
             or mysql://USER:PASSWORD@HOST/DB",
            redact(url)
        ))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
            Self::Mysql(_) => "mysql",
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
                // The busy timeout first, so that switching the journal
                // mode (which needs a lock) waits too.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(r2d2::Error::ConnectionError),
            DatabaseUrl::Mysql(url) => {
                let mut conn =
                    MysqlConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                // Strict mode whatever the server's default: a value that
                // does not fit is an error, never silently truncated; UTC
                // for anything the server itself timestamps.
                conn.batch_execute(
                    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,\
                     ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE'; \
                     SET SESSION time_zone = '+00:00'; SET NAMES utf8mb4 COLLATE utf8mb4_bin;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Mysql(conn))
            }
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
            DatabaseUrl::Postgres(_) | DatabaseUrl::Mysql(_) => 8,
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

    /// Applies pending migrations, one at a time, each in its own
    /// transaction where the backend allows it (SQLite and PostgreSQL roll
    /// a failed step back whole; MySQL commits DDL at once, so its steps
    /// are written idempotent). Returns the versions applied; a failure
    /// names the step that failed and the ones applied before it.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        self.migrate_up_to(None).await
    }

    /// Applies pending migrations up to and including version `last`
    /// (`None`: all): how the upgrade test rebuilds an earlier release's
    /// schema from this binary's (unchanged, forward-only) migrations.
    pub async fn migrate_up_to(&self, last: Option<String>) -> Result<Vec<String>, DbError> {
        self.run(move |conn| {
            let last = last.as_deref();
            match conn {
                DbConnection::Sqlite(c) => apply_pending(c, SQLITE_MIGRATIONS, last),
                DbConnection::Postgres(c) => apply_pending(c, POSTGRES_MIGRATIONS, last),
                DbConnection::Mysql(c) => apply_pending(c, MYSQL_MIGRATIONS, last),
            }
        })
        .await
    }

    /// The newest migration applied: the schema version a backup records.
    pub async fn schema_version(&self) -> Result<String, DbError> {
        self.run(|conn| {
            let applied = match conn {
                DbConnection::Sqlite(c) => c.applied_migrations(),
                DbConnection::Postgres(c) => c.applied_migrations(),
                DbConnection::Mysql(c) => c.applied_migrations(),
            }
            .map_err(|e| DbError::Other(anyhow::anyhow!("reading applied migrations: {e}")))?;
            Ok(applied
                .iter()
                .map(ToString::to_string)
                .max()
                .unwrap_or_default())
        })
        .await
    }

    /// The versions of every migration this binary has, in order.
    pub fn known_migrations(&self) -> Vec<String> {
        use diesel::migration::MigrationSource;
        let names = match self.url {
            DatabaseUrl::Sqlite(_) => {
                MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                    .map(|m| m.iter().map(|m| m.name().version().to_string()).collect())
            }
            DatabaseUrl::Postgres(_) => {
                MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
                    .map(|m| m.iter().map(|m| m.name().version().to_string()).collect())
            }
            DatabaseUrl::Mysql(_) => {
                MigrationSource::<diesel::mysql::Mysql>::migrations(&MYSQL_MIGRATIONS)
                    .map(|m| m.iter().map(|m| m.name().version().to_string()).collect())
            }
        };
        let mut names: Vec<String> = names.unwrap_or_default();
        names.sort();
        names
    }

    /// The database's size on disk in bytes: SQLite's file with its
    /// write-ahead log, PostgreSQL's `pg_database_size`, the data and
    /// indexes of MySQL's tables.
    pub async fn size_bytes(&self) -> Result<i64, DbError> {
        #[derive(QueryableByName)]
        struct Size {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            bytes: i64,
        }
        if let DatabaseUrl::Sqlite(path) = &self.url {
            let path = path.clone();
            return Ok(crate::private_files::sqlite_files(&path)
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len() as i64)
                .sum());
        }
        self.run(|conn| {
            let size: Size = match conn {
                DbConnection::Postgres(c) => {
                    diesel::sql_query("SELECT pg_database_size(current_database()) AS bytes")
                        .get_result(c)?
                }
                DbConnection::Mysql(c) => diesel::sql_query(
                    "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) AS bytes \
                     FROM information_schema.tables WHERE table_schema = DATABASE()",
                )
                .get_result(c)?,
                DbConnection::Sqlite(_) => unreachable!("answered from the files"),
            };
            Ok(size.bytes)
        })
        .await
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| conn.ping().map_err(|e| DbError::Unavailable(e.into())))
            .await
    }
}

/// Runs each pending migration of `source` on its own, so a failure can
/// say which step failed (diesel wraps each in a transaction unless its
/// metadata says otherwise).
pub(crate) fn apply_pending<C, DB>(
    conn: &mut C,
    source: impl diesel::migration::MigrationSource<DB>,
    last: Option<&str>,
) -> Result<Vec<String>, DbError>
where
    C: MigrationHarness<DB>,
    DB: diesel::backend::Backend,
{
    let pending = conn
        .pending_migrations(source)
        .map_err(|e| DbError::Other(anyhow::anyhow!("reading migrations: {e}")))?;
    let mut applied = Vec::new();
    for m in pending {
        if last.is_some_and(|last| m.name().version().to_string().as_str() > last) {
            break;
        }
        let step = m.name().to_string();
        conn.run_migration(&*m).map_err(|e| {
            let before = if applied.is_empty() {
                String::new()
            } else {
                format!(" (applied before it: {})", applied.join(", "))
            };
            DbError::Other(anyhow::anyhow!(
                "migration {step} failed and was not applied: {e}{before}"
            ))
        })?;
        applied.push(step);
    }
    Ok(applied)
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
    //! Test databases: every DB test runs against SQLite, PostgreSQL and
    //! MariaDB (the servers `scripts/lib.sh` starts).
    use super::*;

    /// A server database dropped with the test (a SQLite one is deleted
    /// with its directory).
    enum Server {
        Postgres { admin_url: String, name: String },
        Mysql { admin_url: String, name: String },
    }

    pub struct TestDb {
        pub db: Db,
        /// The URL the database was opened with.
        pub url: String,
        _dir: Option<tempfile::TempDir>,
        server: Option<Server>,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            match self.server.take() {
                Some(Server::Postgres { admin_url, name }) => {
                    if let Ok(mut c) = PgConnection::establish(&admin_url) {
                        let _ = c
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                    }
                }
                Some(Server::Mysql { admin_url, name }) => {
                    if let Ok(mut c) = MysqlConnection::establish(&admin_url) {
                        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
                    }
                }
                None => {}
            }
        }
    }

    /// A server the test setup started; its absence is an error, not a
    /// skip, so a missing install step cannot pass silently.
    fn server_url(var: &str, what: &str) -> String {
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: run the tests through scripts/test.sh, which starts {what} \
                 (every DB test runs against SQLite, PostgreSQL and MariaDB)"
            )
        })
    }

    pub fn pg_admin_url() -> String {
        server_url("WAKEDOCK_TEST_PG_URL", "PostgreSQL")
    }

    pub fn mysql_admin_url() -> String {
        server_url("WAKEDOCK_TEST_MYSQL_URL", "MariaDB")
    }

    /// Creates database `name` on the server of `admin_url`; its URL.
    fn create_database<C: diesel::Connection>(admin_url: &str, name: &str) -> String {
        let mut c = C::establish(admin_url)
            .unwrap_or_else(|e| panic!("connect to the test server {admin_url}: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        format!("{base}/{name}")
    }

    /// A fresh, empty database (no migrations run) on each backend.
    pub async fn empty(backend: &str) -> TestDb {
        let unique = format!("wd_test_{}", uuid::Uuid::new_v4().simple());
        let (url, dir, server) = match backend {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("t.db").display());
                (url, Some(dir), None)
            }
            "postgres" => {
                let admin_url = pg_admin_url();
                let url = create_database::<PgConnection>(&admin_url, &unique);
                let server = Server::Postgres {
                    admin_url,
                    name: unique,
                };
                (url, None, Some(server))
            }
            "mysql" => {
                let admin_url = mysql_admin_url();
                let url = create_database::<MysqlConnection>(&admin_url, &unique);
                let server = Server::Mysql {
                    admin_url,
                    name: unique,
                };
                (url, None, Some(server))
            }
            other => panic!("unknown backend {other}"),
        };
        let db = Db::connect(&url, Some(4)).await.unwrap();
        TestDb {
            db,
            url,
            _dir: dir,
            server,
        }
    }

    /// A migrated database on `backend`.
    pub async fn migrated(backend: &str) -> TestDb {
        let t = empty(backend).await;
        t.db.migrate().await.unwrap();
        t
    }

    pub async fn sqlite() -> TestDb {
        migrated("sqlite").await
    }

    pub const BACKENDS: [&str; 3] = ["sqlite", "postgres", "mysql"];

    /// Every backend, for tests that loop over them.
    pub async fn all() -> Vec<TestDb> {
        let mut out = Vec::new();
        for b in BACKENDS {
            out.push(migrated(b).await);
        }
        out
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
        assert_eq!(
            DatabaseUrl::parse("mariadb://u:p@h:3306/d").unwrap(),
            DatabaseUrl::Mysql("mysql://u:p@h:3306/d".into())
        );
        let err = DatabaseUrl::parse("oracle://u:secret@h/d").unwrap_err();
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

    /// A migration that fails is not applied and changes nothing: the
    /// error names it, the schema version stays, the database works. On
    /// SQLite and PostgreSQL the step is a transaction (its first
    /// statement succeeded and is rolled back); on MySQL, whose DDL
    /// commits at once, a step is one statement, which InnoDB applies
    /// whole or not at all.
    #[tokio::test]
    async fn a_failed_migration_changes_nothing_and_is_named_on_every_backend() {
        for t in testing::all().await {
            let backend = t.db.backend();
            let dir = tempfile::tempdir().unwrap();
            let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations")
                .join(backend);
            for entry in std::fs::read_dir(&src).unwrap() {
                let entry = entry.unwrap();
                let to = dir.path().join(entry.file_name());
                std::fs::create_dir(&to).unwrap();
                for f in ["up.sql", "down.sql"] {
                    std::fs::copy(entry.path().join(f), to.join(f)).unwrap();
                }
            }
            let broken = dir.path().join("2099-01-01-000001_broken");
            std::fs::create_dir(&broken).unwrap();
            let up = match backend {
                "mysql" => "ALTER TABLE users ADD COLUMN half_done BIGINT, ADD COLUMN token_version BIGINT;",
                _ => "ALTER TABLE users ADD COLUMN half_done BIGINT; SELECT no_such_column FROM users;",
            };
            std::fs::write(broken.join("up.sql"), up).unwrap();
            std::fs::write(broken.join("down.sql"), "SELECT 1;").unwrap();
            let before = t.db.schema_version().await.unwrap();
            let path = dir.path().to_path_buf();
            let err =
                t.db.run(move |c| {
                    let source = diesel_migrations::FileBasedMigrations::from_path(&path)
                        .map_err(|e| DbError::Other(anyhow::anyhow!("{e}")))?;
                    match c {
                        DbConnection::Sqlite(c) => apply_pending(c, source, None),
                        DbConnection::Postgres(c) => apply_pending(c, source, None),
                        DbConnection::Mysql(c) => apply_pending(c, source, None),
                    }
                })
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("migration 2099-01-01-000001_broken failed and was not applied"),
                "{backend}: {err}"
            );
            assert_eq!(t.db.schema_version().await.unwrap(), before, "{backend}");
            // The column the step added first is not there, and the
            // table still works as before.
            let probe =
                t.db.run(|c| {
                    c.batch_execute("SELECT half_done FROM users")?;
                    Ok(())
                })
                .await;
            assert!(probe.is_err(), "{backend}: half of the step stayed");
            t.db.run(|c| crate::db::users::insert(c, "after", "h", crate::db::users::Role::User))
                .await
                .unwrap();
            assert!(t.db.migrate().await.unwrap().is_empty(), "{backend}");
        }
    }

    /// Many writers at once on SQLite, through a pool that opens its
    /// connections while they run, beside a backup and retention pruning:
    /// no call fails ("database is locked" never reaches a caller).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_many_concurrent_writers_never_see_database_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, Some(8)).await.unwrap();
        db.migrate().await.unwrap();
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"component").unwrap();
        let wasm_path = wasm.display().to_string();
        db.run(move |c| {
            crate::db::plugins::upsert(
                c,
                &crate::db::plugins::PluginRow {
                    name: "p".into(),
                    version: "1".into(),
                    api_version: "0.1.0".into(),
                    manifest: String::new(),
                    grant_toml: String::new(),
                    config_json: "{}".into(),
                    wasm_sha256: wakedock_plugin_runtime::sha256_hex(b"component"),
                    wasm_path,
                    enabled: true,
                    source: "api".into(),
                    installed_at: 0,
                    updated_at: 0,
                },
            )
        })
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for w in 0..48 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let r = match i % 3 {
                        0 => {
                            db.run(move |c| {
                                crate::db::settings::set(c, &format!("k{}", w % 4), &i.to_string())
                            })
                            .await
                        }
                        1 => {
                            db.run(|c| {
                                crate::db::audit::insert(
                                    c,
                                    &crate::db::audit::NewAuditEntry::new("load.write", "success"),
                                )
                            })
                            .await
                        }
                        _ => {
                            db.run(move |c| {
                                crate::db::plugin_kv::set(c, "p", &format!("k{w}"), b"v", 1 << 20)
                                    .map(drop)
                            })
                            .await
                        }
                    };
                    if let Err(e) = r {
                        return Err(format!("writer {w}, write {i}: {e}"));
                    }
                }
                Ok(())
            }));
        }
        let backup = {
            let db = db.clone();
            let out = dir.path().join("b.jsonl.gz");
            let sources = crate::backup::Sources {
                data_path: dir.path().to_path_buf(),
                jwt_secret_in_config: true,
            };
            tokio::spawn(async move {
                for _ in 0..3 {
                    crate::backup::create(&db, &sources, &out)
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    db.run(|c| crate::db::audit::prune_batch(c, None, Some(50), 20))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        };
        let mut errors: Vec<String> = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                errors.push(e);
            }
        }
        if let Err(e) = backup.await.unwrap() {
            errors.push(e);
        }
        assert!(
            errors.is_empty(),
            "{} failures: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
    }

    #[tokio::test]
    async fn migrations_apply_once_on_every_backend() {
        for t in testing::all().await {
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
