//! The database: users, access tokens and durable sessions, in an embedded SQLite file (the
//! default: no server needed) or in PostgreSQL (`database_url = "postgres://…"`, for several
//! instances), migrations at start.
//!
//! One data layer serves both. Every query is written once, in SQL both engines accept, and run
//! through [`with_pool!`](crate::db) on the native driver of the backend at hand. (sqlx's `Any`
//! driver was the other option; it copies every row into its own value type, cannot take SQLite's
//! typed connect options — WAL, busy timeout, read-only readers — and narrows the column types;
//! the native pools keep the hot path as it was.) What differs is declared, not duplicated: the
//! DDL (`migrations/` for SQLite, `migrations-postgres/` for PostgreSQL, the same numbered steps
//! and the same tables), how a write transaction starts and locks ([`Dialect`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How long a SQLite reader beyond the first stays open without a query.
const READER_IDLE: Duration = Duration::from_secs(30);
/// Page cache of each SQLite reader, in KiB (SQLite's default is 2000).
const READER_CACHE_KIB: u32 = 512;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL or path is not usable.
    #[error("invalid database location {location:?}: {reason}")]
    Location {
        /// What was configured.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// SQLite refused to open or migrate the file.
    #[error("cannot open the database at {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// PostgreSQL refused the connection or the migration.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
}

/// Where the database is: `database_url` validated.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user:pass@host:port/db?options=…`).
    Postgres(String),
}

impl DatabaseLocation {
    /// Parses `database_url`: a file path, `sqlite://path`, or `postgres://…`/`postgresql://…`.
    ///
    /// # Errors
    /// [`DbError::Location`] for other schemes or a malformed PostgreSQL URL.
    pub fn parse(location: &str) -> Result<Self, DbError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            PgConnectOptions::from_str(location).map_err(|e| DbError::Location {
                location: redact(location),
                reason: e.to_string(),
            })?;
            return Ok(Self::Postgres(location.to_owned()));
        }
        sqlite_path(location).map(Self::Sqlite)
    }
}

/// The URL with any password replaced, for logs and messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparseable URL)".into(),
    }
}

impl std::fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl std::fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// The open database.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) pools: Pools,
}

/// The backend's pools.
#[derive(Debug, Clone)]
pub(crate) enum Pools {
    /// Two pools on one SQLite file: many readers, and a single writer so writes queue in the
    /// process instead of failing with `database is locked`.
    Sqlite { read: SqlitePool, write: SqlitePool },
    /// One pool; PostgreSQL serialises conflicting writes itself (row locks).
    Postgres(PgPool),
}

/// What the backends do differently around the shared queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// How a read-modify-write transaction starts. SQLite: take the write lock before reading
    /// (`IMMEDIATE`), so two such transactions cannot interleave, even from two processes.
    /// PostgreSQL: a plain transaction whose read locks the rows (`FOR UPDATE`).
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }
}

/// Runs `$body` with `$pool` bound to the pool (`read` or `write`) of whichever backend `$db`
/// is, and `$dialect` to its [`Dialect`]. The body — queries and row decoding — is written once
/// and compiled once per backend, each against its native driver.
macro_rules! with_pool {
    ($db:expr, read, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$db.pools {
            $crate::db::Pools::Sqlite { read: $pool, .. } => {
                let $dialect = $crate::db::Dialect::Sqlite;
                let _ = $dialect;
                $body
            }
            $crate::db::Pools::Postgres($pool) => {
                let $dialect = $crate::db::Dialect::Postgres;
                let _ = $dialect;
                $body
            }
        }
    };
    ($db:expr, write, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$db.pools {
            $crate::db::Pools::Sqlite { write: $pool, .. } => {
                let $dialect = $crate::db::Dialect::Sqlite;
                let _ = $dialect;
                $body
            }
            $crate::db::Pools::Postgres($pool) => {
                let $dialect = $crate::db::Dialect::Postgres;
                let _ = $dialect;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Turns `vestibule.db`, `sqlite://vestibule.db` or `sqlite:vestibule.db` into a file path.
///
/// # Errors
/// [`DbError::Location`] for other schemes (PostgreSQL URLs go through [`DatabaseLocation`]).
pub fn sqlite_path(location: &str) -> Result<PathBuf, DbError> {
    let bad = |reason: &str| DbError::Location {
        location: location.to_owned(),
        reason: reason.to_owned(),
    };
    let path = if let Some(rest) = location
        .strip_prefix("sqlite://")
        .or_else(|| location.strip_prefix("sqlite:"))
    {
        rest.split('?').next().unwrap_or(rest)
    } else if location.contains("://") {
        return Err(bad(
            "use a file path, sqlite://path, or postgres://user@host:port/database",
        ));
    } else {
        location
    };
    if path.is_empty() {
        return Err(bad("the path is empty"));
    }
    Ok(PathBuf::from(path))
}

impl Database {
    /// Opens the database at `location` and runs the migrations. `timeout` bounds how long a
    /// PostgreSQL request waits for a connection and runs (`statement_timeout`), so a slow or
    /// unreachable server gives 503 `store_unavailable` instead of a hang.
    ///
    /// # Errors
    /// [`DbError`] when the database cannot be opened, reached or migrated.
    pub async fn connect(location: &DatabaseLocation, timeout: Duration) -> Result<Self, DbError> {
        match location {
            DatabaseLocation::Sqlite(path) => Self::open(path).await,
            DatabaseLocation::Postgres(url) => Self::open_postgres(url, timeout, false).await,
        }
    }

    /// [`Database::connect`] for a long-running server: an unreachable PostgreSQL is not an
    /// error (the server starts not ready and recovers when it answers; see `open_postgres`).
    /// One-shot commands use [`Database::connect`], which says at once that it is unreachable.
    ///
    /// # Errors
    /// [`DbError`] when SQLite cannot be opened, or a reachable database cannot be migrated.
    pub async fn connect_or_wait(
        location: &DatabaseLocation,
        timeout: Duration,
    ) -> Result<Self, DbError> {
        match location {
            DatabaseLocation::Sqlite(path) => Self::open(path).await,
            DatabaseLocation::Postgres(url) => Self::open_postgres(url, timeout, true).await,
        }
    }

    /// With `wait`, PostgreSQL need not be up when the server starts: the pool connects lazily, the server
    /// starts not ready (`/readyz` 503, requests that need the database 503 `store_unavailable`
    /// within `timeout`), and the first connection that reaches the database runs the migrations
    /// before anything else uses it, so the server recovers with no restart. A database that
    /// answers at start is migrated before the server listens, and a failing migration (unlike
    /// an unreachable server) still stops the start.
    async fn open_postgres(url: &str, timeout: Duration, wait: bool) -> Result<Self, DbError> {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");
        let err = |source| DbError::Connect {
            url: redact(url),
            source,
        };
        let statement_timeout = timeout.as_millis().to_string();
        let opts = PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("statement_timeout", statement_timeout.as_str())]);
        let migrated = Arc::new(AtomicBool::new(false));
        let on_connect = migrated.clone();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _meta| {
                let migrated = on_connect.clone();
                Box::pin(async move {
                    // Migrations take an advisory lock: concurrent first connections (or
                    // instances) wait for each other and the later ones find nothing to do.
                    if !migrated.load(Ordering::Acquire) {
                        // `run_direct`: `run(&mut *conn)` trips the compiler's "Acquire is not
                        // general enough" in this closure (sqlx's own documented workaround).
                        MIGRATOR
                            .run_direct(None, conn, false)
                            .await
                            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
                        migrated.store(true, Ordering::Release);
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(opts);
        match tokio::time::timeout(timeout, pool.acquire()).await {
            Ok(Ok(_conn)) => {}
            Ok(Err(sqlx::Error::Migrate(e))) => return Err(DbError::Migrate(*e)),
            Ok(Err(e)) if !wait => return Err(err(e)),
            Err(_) if !wait => return Err(err(sqlx::Error::PoolTimedOut)),
            Ok(Err(e)) => tracing::warn!(
                url = %redact(url),
                error = %e,
                "PostgreSQL is unreachable: starting not ready; the migrations run when it answers"
            ),
            Err(_) => tracing::warn!(
                url = %redact(url),
                "PostgreSQL did not answer within {timeout:?}: starting not ready; the migrations run when it answers"
            ),
        }
        Ok(Self {
            pools: Pools::Postgres(pool),
        })
    }

    /// Which backend this is.
    pub(crate) fn dialect(&self) -> Dialect {
        match self.pools {
            Pools::Sqlite { .. } => Dialect::Sqlite,
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether this is PostgreSQL (shared by several instances) rather than an embedded file.
    pub fn is_postgres(&self) -> bool {
        self.dialect() == Dialect::Postgres
    }

    /// Opens (creating if needed) the SQLite file and runs the migrations.
    ///
    /// # Errors
    /// [`DbError`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        Self::open_sqlite(path, READER_IDLE).await
    }

    /// [`Database::open`], with the readers closing after `reader_idle` without a query.
    async fn open_sqlite(path: &Path, reader_idle: Duration) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a crash of the process loses no committed transaction.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // The one writer lives as long as the database is open: sqlx's default lifetime (30
        // min) closed and reopened it every half hour (a new thread, the file opened, the
        // pragmas run, the statement cache lost), with every write waiting on the reopen. A
        // local file does not go stale the way a server connection can.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations").run(&write).await?;
        // Readers: four under load, one when quiet. Each SQLite connection keeps its own page
        // cache (2 MiB by default), which it gives back only when it closes: after a burst the
        // three extra readers close once idle for READER_IDLE, and each caches at most
        // READER_CACHE_KIB. Session reads are point lookups by key, mostly answered by the read
        // cache above the store; the OS page cache holds the file. After a 200-client soak
        // (bench/soak.mjs) the server's RSS 60 s later went from 30.3 to 28.4 MB
        // (bench/RESULTS.md, issue 20).
        // No reader is kept open when none is used: sqlx's reaper closes a connection idle past
        // the timeout and, to keep `min_connections`, opens a new one at once. With a minimum
        // of one, the reader of a server whose reads all hit the read cache was closed and
        // reopened every 30–60 s for nothing (a new thread, the file opened, the pragmas run;
        // seen in /proc/PID/task). Now the first read after a quiet spell opens one. (It was
        // not what gave growth.sh's purge phase a p99 window of 4–7 ms about every 30 s: those
        // stayed, and bare axum shows them too; bench/RESULTS.md, 2026-12-07.)
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .idle_timeout(reader_idle)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(
                opts.read_only(true)
                    .pragma("cache_size", format!("-{READER_CACHE_KIB}")),
            )
            .await
            .map_err(open_err)?;
        Ok(Self {
            pools: Pools::Sqlite { read, write },
        })
    }

    /// Waits for running queries and closes the pools (checkpointing the WAL).
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }

    /// SQLite's `data_version` as seen by the writer connection: it changes exactly when another
    /// connection — in practice another process, such as a `vestibule user` command — commits.
    /// (This process writes only through that connection, and its readers never write.)
    ///
    /// # Errors
    /// The driver's error.
    /// Always 0 on PostgreSQL, whose other writers are other instances (see the Redis store and
    /// its coherent cache for sessions shared by several instances).
    pub async fn external_data_version(&self) -> Result<i64, sqlx::Error> {
        match &self.pools {
            Pools::Sqlite { write, .. } => {
                sqlx::query_scalar("PRAGMA data_version")
                    .fetch_one(write)
                    .await
            }
            Pools::Postgres(_) => Ok(0),
        }
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, read, |pool, _d| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two migration sets are one schema in two dialects: the same numbered steps.
    #[test]
    fn both_backends_have_the_same_migration_steps() {
        let steps = |m: sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let sqlite = steps(sqlx::migrate!("./migrations"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, steps(sqlx::migrate!("./migrations-postgres")));
    }

    /// An idle reader closes and nothing opens another until a query needs it (with a kept
    /// minimum, sqlx reopened one after every idle period: a connection churned while idle).
    #[tokio::test]
    async fn an_idle_sqlite_reader_closes_and_is_not_reopened_until_a_read() {
        let dir = tempfile::tempdir().expect("dir");
        let idle = Duration::from_millis(200);
        let db = Database::open_sqlite(&dir.path().join("t.db"), idle)
            .await
            .expect("open");
        let Pools::Sqlite { read, .. } = &db.pools else {
            panic!("a SQLite database");
        };
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(read)
            .await
            .expect("read");
        assert_eq!(one, 1);
        assert_eq!(read.size(), 1, "the read opened a reader");
        // Five reaper periods: the reader is reaped and none is opened in its place.
        tokio::time::sleep(idle * 5).await;
        assert_eq!(read.size(), 0, "no reader is kept while nothing reads");
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(read)
            .await
            .expect("read again");
        assert_eq!(one, 1, "the next read opens one");
        db.close().await;
    }

    /// The SQLite writer is never recycled for its age (sqlx's default reopened it every 30
    /// minutes); readers still close when idle.
    #[tokio::test]
    async fn the_sqlite_writer_has_no_lifetime() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::open_sqlite(&dir.path().join("t.db"), READER_IDLE)
            .await
            .expect("open");
        let Pools::Sqlite { read, write } = &db.pools else {
            panic!("a SQLite database");
        };
        assert_eq!(write.options().get_max_lifetime(), None);
        assert_eq!(read.options().get_idle_timeout(), Some(READER_IDLE));
        db.close().await;
    }

    #[test]
    fn locations_are_parsed_and_passwords_never_shown() {
        assert_eq!(
            DatabaseLocation::parse("vestibule.db").expect("file"),
            DatabaseLocation::Sqlite("vestibule.db".into())
        );
        let pg = DatabaseLocation::parse("postgres://u:secret@db:5432/app").expect("pg");
        assert!(matches!(pg, DatabaseLocation::Postgres(_)));
        assert!(!pg.to_string().contains("secret"), "{pg}");
        assert!(!format!("{pg:?}").contains("secret"));
        assert!(DatabaseLocation::parse("mysql://h/db").is_err());
    }
}
