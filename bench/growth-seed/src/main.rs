//! Seeds a Vestibule database with N users and N logged-in (cookie) sessions, for
//! bench/growth.sh, and prints the one session token the bench sends as its cookie.
//!
//!   vestibule-bench-growth-seed sqlite  <db path>  <N> <ttl seconds>
//!   vestibule-bench-growth-seed postgres <url>     <N> <ttl seconds>
//!   vestibule-bench-growth-seed redis    <url>     <N> <ttl seconds> <key prefix>   (sessions only)
//!
//! The database must already hold user id 1 (`vestibule user add bench`, so its password hash is
//! the server's own and the bench can log in as it); users 2..=N copy that hash (one Argon2 run,
//! not N). Session 0 belongs to user 1 and stays live (14 days idle); sessions 1..N belong to
//! users 2..=N and expire after `ttl seconds` — the purge phase seeds a short ttl so that a
//! million sessions expire together while the server is under load.
//!
//! Everything that decides what a row holds comes from the library: the migrations
//! (`Database::connect`), the tokens and their stored hash (`SecretToken`), and the record's
//! stored data (`Record::stored_data`, what a cookie login writes). Only the INSERTs are raw SQL,
//! batched, because one-row-per-call store writes would take minutes per million.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Map;
use sqlx::{QueryBuilder, Row};
use vestibule::db::{Database, DatabaseLocation};
use vestibule::session::stores::{RedisConfig, RedisStore};
use vestibule::session::{Record, SessionStore, SessionUser, Transport, now};
use vestibule::token::{SecretToken, TokenKind};

/// Rows per INSERT statement: 8 bound values each stays under SQLite's and PostgreSQL's limits.
const ROWS_PER_STATEMENT: usize = 500;
/// Rows per transaction: big enough that commits are rare, small enough to bound memory.
const ROWS_PER_TX: u64 = 50_000;
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

struct SessionRow {
    key: Vec<u8>,
    user_id: i64,
    data: String,
    created_at: i64,
    expires_at: i64,
    absolute_expires_at: i64,
}

/// Session `i` (user `i + 1`) as a row of the sessions table; returns its token too.
fn session(i: u64, t: i64, ttl: i64) -> Result<(SecretToken, SessionRow)> {
    let (token, record) = record(i, t, ttl)?;
    let data = serde_json::to_string(&record.stored_data())?;
    Ok((
        token,
        SessionRow {
            key: record.key.as_bytes().to_vec(),
            user_id: record.user_id.unwrap_or_default(),
            data,
            created_at: record.created_at,
            expires_at: record.expires_at,
            absolute_expires_at: record.absolute_expires_at,
        },
    ))
}

/// Session `i` (user `i + 1`), as a cookie login writes it; returns its token too.
fn record(i: u64, t: i64, ttl: i64) -> Result<(SecretToken, Record)> {
    let token = SecretToken::generate(TokenKind::Session);
    let id = i64::try_from(i + 1).context("user id")?;
    let username = if i == 0 {
        "bench".to_owned()
    } else {
        format!("user{id:07}")
    };
    // The known session (0) stays live; the others expire after `ttl`.
    let expires_at = if i == 0 { t + 14 * 86_400 } else { t + ttl };
    let record = Record {
        key: token.hash(),
        user_id: Some(id),
        user: Some(SessionUser {
            id,
            username,
            auth_time: t,
            transport: Transport::Cookie,
        }),
        data: Map::new(),
        created_at: t,
        last_seen: t,
        expires_at,
        absolute_expires_at: t + 30 * 86_400,
        user_agent: Some(vestibule::session::shared_user_agent(USER_AGENT)),
    };
    Ok((token, record))
}

/// Inserts users 2..=n and sessions 0..n on `$conn` (a SQLite or PostgreSQL connection; the SQL
/// is the same), `ROWS_PER_TX` rows per transaction. Evaluates to the known token.
macro_rules! seed {
    ($conn:expr, $n:expr, $ttl:expr, $active:expr) => {{
        let conn = &mut $conn;
        let (n, ttl): (u64, i64) = ($n, $ttl);
        let t = now();
        let hash: String = sqlx::query("SELECT password_hash FROM users WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .context("no user id 1: run `vestibule user add bench` on the database first")?
            .try_get("password_hash")?;
        let mut next = 2u64;
        while next <= n {
            let end = (next + ROWS_PER_TX).min(n + 1);
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let mut at = next;
            while at < end {
                let stop = (at + ROWS_PER_STATEMENT as u64).min(end);
                let mut q = QueryBuilder::new(
                    "INSERT INTO users (id, username, password_hash, is_active, created_at) ",
                );
                q.push_values(at..stop, |mut b, id| {
                    let id = i64::try_from(id).unwrap_or(i64::MAX);
                    b.push_bind(id)
                        .push_bind(format!("user{id:07}"))
                        .push_bind(hash.clone())
                        .push_bind($active)
                        .push_bind(t);
                });
                q.build().execute(&mut *tx).await?;
                at = stop;
            }
            tx.commit().await?;
            next = end;
        }
        let mut known = None;
        let mut next = 0u64;
        while next < n {
            let end = (next + ROWS_PER_TX).min(n);
            let mut rows = Vec::with_capacity(usize::try_from(end - next)?);
            for i in next..end {
                let (token, row) = session(i, t, ttl)?;
                if i == 0 {
                    known = Some(token);
                }
                rows.push(row);
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO sessions (key, user_id, data, created_at, last_seen, \
                     expires_at, absolute_expires_at, user_agent) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.key.clone())
                        .push_bind(r.user_id)
                        .push_bind(r.data.clone())
                        .push_bind(r.created_at)
                        .push_bind(r.created_at)
                        .push_bind(r.expires_at)
                        .push_bind(r.absolute_expires_at)
                        .push_bind(USER_AGENT);
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            next = end;
        }
        known.context("N must be at least 1")?
    }};
}

async fn seed_sqlite(path: &str, n: u64, ttl: i64) -> Result<SecretToken> {
    // The library's migrations (a no-op when `vestibule user add` already made the file).
    let db = Database::open(std::path::Path::new(path)).await?;
    db.close().await;
    use sqlx::ConnectOptions;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    // A throwaway bench file: no fsync while seeding; the server reopens it with its own
    // settings (WAL, synchronous NORMAL).
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        // 256 MiB page cache: random 32-byte keys land all over the sessions B-tree.
        .pragma("cache_size", "-262144")
        .connect()
        .await?;
    let token = seed!(conn, n, ttl, 1i64);
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    sqlx::Connection::close(conn).await?;
    Ok(token)
}

async fn seed_postgres(url: &str, n: u64, ttl: i64) -> Result<SecretToken> {
    let location = DatabaseLocation::parse(url)?;
    let db = Database::connect(&location, Duration::from_secs(30)).await?;
    db.close().await;
    use sqlx::ConnectOptions;
    let mut conn: sqlx::PgConnection = url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .connect()
        .await?;
    let token = seed!(conn, n, ttl, true);
    // Later inserts (a login's new user, say) must not collide with the explicit ids.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("ANALYZE users").execute(&mut conn).await?;
    sqlx::query("ANALYZE sessions").execute(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    Ok(token)
}

/// Sessions only (users stay in the SQL database): created through the library's `RedisStore`
/// under `prefix`, 256 at a time. The caller deletes the prefix afterwards.
async fn seed_redis(url: &str, n: u64, ttl: i64, prefix: &str) -> Result<SecretToken> {
    let mut config = RedisConfig::single(url);
    config.prefix = prefix.to_owned();
    config.timeout = Duration::from_secs(10);
    let store = RedisStore::new(&config).context("redis store")?;
    let t = now();
    let (known, first) = record(0, t, ttl)?;
    store.create(&first).await.context("create")?;
    let mut done = 1u64;
    while done < n {
        let end = (done + 256).min(n);
        let mut tasks = Vec::with_capacity(256);
        for i in done..end {
            let (_, r) = record(i, t, ttl)?;
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.create(&r).await }));
        }
        for task in tasks {
            task.await.context("join")?.context("create")?;
        }
        done = end;
    }
    Ok(known)
}

const USAGE: &str = "usage: vestibule-bench-growth-seed sqlite|postgres|redis <db path|url> <N> <ttl seconds> [redis key prefix]";

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kind), Some(target), Some(n), Some(ttl)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        bail!(USAGE);
    };
    let n: u64 = n.parse().context("N")?;
    let ttl: i64 = ttl.parse().context("ttl seconds")?;
    if n == 0 || ttl <= 0 {
        bail!(USAGE);
    }
    let start = Instant::now();
    let token = match kind.as_str() {
        "sqlite" => seed_sqlite(target, n, ttl).await?,
        "postgres" => seed_postgres(target, n, ttl).await?,
        "redis" => {
            let prefix = args.get(5).context("redis needs a key prefix")?;
            seed_redis(target, n, ttl, prefix).await?
        }
        _ => bail!(USAGE),
    };
    eprintln!(
        "seeded {n} users and sessions ({kind}) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // The only thing on stdout: the cookie value.
    println!("{}", token.expose());
    Ok(())
}
