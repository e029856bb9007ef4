//! External services for tests (Redis, PostgreSQL): found, or skipped with a clear message.
//!
//! A developer's machine may have neither, so tests that need one print why they skip and pass.
//! CI sets `VESTIBULE_REQUIRE_SERVICES=1`, which turns every skip into a failure: there the
//! services must be up and these tests must run.

use std::time::Duration;

use vestibule::token::{SecretToken, TokenKind};

/// The variable that makes a missing service a test failure instead of a skip.
pub const REQUIRE_VAR: &str = "VESTIBULE_REQUIRE_SERVICES";

/// Redis for tests: `VESTIBULE_TEST_REDIS_URL`, default the local server.
pub fn redis_url() -> String {
    std::env::var("VESTIBULE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Skips (returns `false` after saying why) or, under `VESTIBULE_REQUIRE_SERVICES=1`, fails.
pub fn unavailable(service: &str, url: &str, why: &str) -> bool {
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{service} at {url} is required ({REQUIRE_VAR}=1) but unreachable: {why}");
    }
    eprintln!(
        "SKIPPED: {service} at {url} is unreachable ({why}); set {REQUIRE_VAR}=1 to make this a failure"
    );
    false
}

/// Whether Redis answers PING at `url` within a second; prints the skip message if not.
pub async fn redis_reachable(url: &str) -> bool {
    let check = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(1), check).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => unavailable("Redis", url, &e),
        Err(_) => unavailable("Redis", url, "no answer within 1 s"),
    }
}

/// A fresh random key prefix, so tests sharing one Redis never see each other's keys.
pub fn random_prefix() -> String {
    let hex = SecretToken::generate(TokenKind::Session).hash().to_hex();
    format!("vestibule-test:{}:", &hex[..16])
}

/// Deletes every key under a prefix when dropped (also when the test panicked).
pub struct RedisKeysGuard {
    pub urls: Vec<String>,
    pub prefix: String,
}

impl Drop for RedisKeysGuard {
    fn drop(&mut self) {
        for url in &self.urls {
            if let Err(e) = delete_prefix(url, &self.prefix) {
                eprintln!(
                    "could not clean up redis keys {}* at {url}: {e}",
                    self.prefix
                );
            }
        }
    }
}

fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(1))?;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut c)?;
    for k in keys {
        // One by one: in a cluster each key may live in another slot (DEL is per node anyway).
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&k).query(&mut c);
    }
    Ok(())
}

/// A `redis-server` owned by one test: its own loopback port and directory (append-only file on,
/// so its data survives a stop and start), stopped when dropped.
pub struct OwnedRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    extra: Vec<String>,
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl OwnedRedis {
    /// Starts one on a free port; `None` (after the skip message) without `redis-server`.
    pub async fn start(extra: &[&str]) -> Option<Self> {
        Self::start_on(free_port(), extra).await
    }

    /// Starts one on `port`; `None` (after the skip message) without `redis-server`.
    pub async fn start_on(port: u16, extra: &[&str]) -> Option<Self> {
        let mut r = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        if let Err(e) = r.launch().await {
            unavailable("redis-server", "PATH", &e);
            return None;
        }
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the process (again) and waits until it answers PING (at most 10 s).
    pub async fn launch(&mut self) -> Result<(), String> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        for _ in 0..100 {
            let ping = async {
                let client = redis::Client::open(self.url()).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut c).await.ok()
            };
            if tokio::time::timeout(Duration::from_millis(200), ping)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("redis-server did not answer within 10 s".into())
    }

    /// Runs `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs")
    }

    /// Stops the server cleanly (its data is on disk) and waits for the process to end.
    pub fn stop(&mut self) {
        let _ = self.cli(&["shutdown"]);
        if let Some(mut child) = self.child.take() {
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnedRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// PostgreSQL for tests: `VESTIBULE_TEST_POSTGRES_URL`, default the local server's `test` database.
pub fn postgres_url() -> String {
    std::env::var("VESTIBULE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema in the test PostgreSQL, dropped (with everything in it) when this is dropped.
/// `url` selects it through `search_path`, so migrations and queries stay inside it.
pub struct PgSchema {
    pub url: String,
    base: String,
    name: String,
}

impl PgSchema {
    /// Creates one; `None` (after the skip message) when PostgreSQL is unreachable.
    pub async fn create() -> Option<Self> {
        let base = postgres_url();
        let name = format!("vt_{}", &random_prefix()[15..31]);
        let made = async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .execute(&mut c)
                .await?;
            c.close().await
        };
        match tokio::time::timeout(Duration::from_secs(3), made).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                unavailable("PostgreSQL", &base, &e.to_string());
                return None;
            }
            Err(_) => {
                unavailable("PostgreSQL", &base, "no answer within 3 s");
                return None;
            }
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(Self {
            url: format!("{base}{sep}options[search_path]={name}"),
            base,
            name,
        })
    }
}

/// A server whose users and sessions live in a fresh PostgreSQL schema (dropped with the returned
/// [`PgSchema`]: keep it alive for the test); `None`, after the skip message, when PostgreSQL is
/// unreachable. `tweak` runs after the database settings.
pub async fn spawn_on_postgres(
    tweak: impl FnOnce(&mut vestibule::config::RawConfig),
) -> Option<(crate::support::TestApp, PgSchema)> {
    let schema = PgSchema::create().await?;
    let url = schema.url.clone();
    let app = crate::support::TestApp::spawn_with(|raw| {
        raw.database_url = url;
        raw.session.store = vestibule::config::RawStore::One("database".into());
        tweak(raw);
    })
    .await;
    Some((app, schema))
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let name = self.name.clone();
        // Drop runs outside async: a thread with its own small runtime does the cleanup.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&base)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
                c.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {done:?}", self.name);
        }
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A three-primary Redis Cluster on loopback, started by the test and gone with it.
pub struct OwnedCluster {
    pub nodes: Vec<OwnedRedis>,
}

impl OwnedCluster {
    /// Starts three `redis-server --cluster-enabled yes`, joins them with
    /// `redis-cli --cluster create`, and waits for `cluster_state:ok` on each (at most 30 s).
    pub async fn start() -> Option<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let node = OwnedRedis::start_on(
                cluster_port(),
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
            .await?;
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .arg("--cluster-yes")
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("redis-cli --cluster create failed: {o:?}"),
            Err(e) => {
                unavailable("redis-cli", "PATH", &e.to_string());
                return None;
            }
        }
        for node in &nodes {
            let mut ok = false;
            for _ in 0..300 {
                let info = node.cli(&["cluster", "info"]);
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "cluster never became ok on port {}", node.port);
        }
        Some(Self { nodes })
    }

    /// The seed URLs (all three nodes).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(OwnedRedis::url).collect()
    }
}

/// A loopback TCP relay to a service, owned by one test, which turns it off (new connections are
/// refused and open ones cut, as when the service goes down) and on again.
pub struct Relay {
    pub port: u16,
    on: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays a random loopback port to `target`, starting `on` or off.
    pub async fn start(target: std::net::SocketAddr, on: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay binds");
        let port = listener.local_addr().expect("relay address").port();
        let (tx, rx) = tokio::sync::watch::channel(on);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !*rx.borrow() {
                    drop(client); // off: the connection is closed at once
                    continue;
                }
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(Ok(mut server)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::net::TcpStream::connect(target),
                    )
                    .await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        Self { port, on: tx, task }
    }

    /// Turns the relay on or off (off cuts the relayed connections).
    pub fn set(&self, on: bool) {
        let _ = self.on.send(on);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.set(false);
        self.task.abort();
    }
}

/// `url` with its host and port replaced by a loopback port (e.g. a [`Relay`]'s).
pub fn via_port(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).expect("a URL");
    u.set_host(Some("127.0.0.1")).expect("host");
    u.set_port(Some(port)).expect("port");
    u.to_string()
}

/// Where a URL's service listens (for a [`Relay`] to reach it).
pub fn socket_of(url: &str) -> std::net::SocketAddr {
    let u = url::Url::parse(url).expect("a URL");
    let host = u.host_str().unwrap_or("127.0.0.1");
    let port = u.port_or_known_default().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .expect("resolves")
        .next()
        .expect("an address")
}
