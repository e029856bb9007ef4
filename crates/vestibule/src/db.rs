//! The embedded SQLite database: users and durable sessions, one file, migrations at start.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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
}

/// Two pools on one SQLite file: many readers, and a single writer so writes queue in the
/// process instead of failing with `database is locked`.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) read: SqlitePool,
    pub(crate) write: SqlitePool,
}

/// Turns `vestibule.db`, `sqlite://vestibule.db` or `sqlite:vestibule.db` into a file path.
///
/// # Errors
/// [`DbError::Location`] for other schemes (PostgreSQL arrives with the scale-out issue).
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
            "only SQLite (a file path or sqlite://path) is supported",
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
    /// Opens (creating if needed) the SQLite file and runs the migrations.
    ///
    /// # Errors
    /// [`DbError`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
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
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await
            .map_err(open_err)?;
        sqlx::migrate!("./migrations").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.read_only(true))
            .await
            .map_err(open_err)?;
        Ok(Self { read, write })
    }

    /// Waits for running queries and closes the pools (checkpointing the WAL).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// SQLite's `data_version` as seen by the writer connection: it changes exactly when another
    /// connection — in practice another process, such as a `vestibule user` command — commits.
    /// (This process writes only through that connection, and its readers never write.)
    ///
    /// # Errors
    /// The driver's error.
    pub async fn external_data_version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&self.write)
            .await
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(|_| ())
    }
}
