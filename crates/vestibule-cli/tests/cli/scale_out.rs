//! Two `vestibule serve` processes sharing Redis (sessions, with the coherent cache) and
//! PostgreSQL (users, access tokens): what one does, the other honours on the very next request.
//! Skipped with a message when Redis or PostgreSQL is unreachable, unless
//! `VESTIBULE_REQUIRE_SERVICES=1` (CI), which makes that a failure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{Server, free_port, http, http_get, text, vestibule};

fn skip(what: &str) -> bool {
    if std::env::var("VESTIBULE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{what} is required (VESTIBULE_REQUIRE_SERVICES=1) but unreachable");
    }
    eprintln!(
        "SKIPPED: {what} is unreachable; set VESTIBULE_REQUIRE_SERVICES=1 to make this a failure"
    );
    true
}

fn unique() -> String {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), t)
}

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS: &str = "redis://127.0.0.1:6379/0";

fn psql(sql: &str) -> bool {
    Command::new("psql")
        .args([PG, "-qAtc", sql])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn redis_cli(args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-u", REDIS])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Drops the schema and the Redis keys of one run, also when the test failed.
struct Cleanup {
    schema: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        let keys =
            redis_cli(&["--scan", "--pattern", &format!("{}*", self.prefix)]).unwrap_or_default();
        for k in keys.lines().filter(|k| !k.is_empty()) {
            redis_cli(&["del", k]);
        }
    }
}

fn start(dir: &Path, config: &str) -> (Server, u16) {
    std::fs::write(dir.join("vestibule.toml"), config).expect("config");
    let port = free_port();
    let out = std::fs::File::create(dir.join("server.out")).expect("log file");
    let err = std::fs::File::create(dir.join("server.err")).expect("log file");
    let child = vestibule(dir)
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/readyz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(
            Instant::now() < deadline,
            "server did not become ready: {}",
            std::fs::read_to_string(dir.join("server.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

/// A logged-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

fn status(res: &str) -> u16 {
    res.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body(res: &str) -> Value {
    res.split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

fn post_login(port: u16, path: &str, user: &str, password: &str) -> Browser {
    let res = http(
        port,
        "POST",
        path,
        "Content-Type: application/json\r\nSec-Fetch-Site: same-origin\r\n",
        &format!(r#"{{"username":"{user}","password":"{password}"}}"#),
    )
    .expect("login");
    assert!(matches!(status(&res), 200 | 201), "{res}");
    let cookie = res
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with("vestibule_session="))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    let csrf = body(&res)["csrf_token"]
        .as_str()
        .expect("csrf token")
        .to_owned();
    Browser { cookie, csrf }
}

impl Browser {
    fn get(&self, port: u16, path: &str) -> String {
        http(
            port,
            "GET",
            path,
            &format!("Cookie: {}\r\n", self.cookie),
            "",
        )
        .unwrap_or_default()
    }

    fn send(&self, port: u16, method: &str, path: &str, json: &str) -> String {
        let headers = format!(
            "Cookie: {}\r\nX-CSRF-Token: {}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/json\r\n",
            self.cookie, self.csrf
        );
        http(port, method, path, &headers, json).unwrap_or_default()
    }
}

fn bearer_me(port: u16, token: &str) -> u16 {
    status(
        &http(
            port,
            "GET",
            "/auth/me",
            &format!("Authorization: Bearer {token}\r\n"),
            "",
        )
        .unwrap_or_default(),
    )
}

#[test]
fn two_instances_share_users_sessions_and_revocations() {
    if !psql("SELECT 1") && skip(&format!("PostgreSQL at {PG}")) {
        return;
    }
    if redis_cli(&["ping"]).is_none() && skip(&format!("Redis at {REDIS}")) {
        return;
    }
    let id = unique();
    let cleanup = Cleanup {
        schema: format!("vt_cli_{id}"),
        prefix: format!("vestibule-test:{id}:"),
    };
    assert!(psql(&format!("CREATE SCHEMA {}", cleanup.schema)));
    let config = format!(
        "database_url = \"{PG}?options[search_path]={}\"\n[session]\nstore = \"{REDIS}\"\nredis_prefix = \"{}\"\n",
        cleanup.schema, cleanup.prefix
    );
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_a, a) = start(dir_a.path(), &config);
    let (_b, b) = start(dir_b.path(), &config);
    let check = vestibule(dir_a.path())
        .args(["config", "check"])
        .output()
        .expect("config check");
    assert!(text(&check).contains("CachedRedis"), "{}", text(&check));

    // Signed up and logged in on A: authenticated on B.
    let pw = "a long password";
    let first = post_login(a, "/auth/signup", "erin", pw);
    assert_eq!(
        status(&first.get(b, "/auth/me")),
        200,
        "A's session unknown to B"
    );
    assert_eq!(status(&first.get(a, "/auth/me")), 200);

    // Logged out on B: refused on A at the very next request (A had it cached).
    assert_eq!(status(&first.send(b, "POST", "/auth/logout", "")), 204);
    assert_eq!(
        status(&first.get(a, "/auth/me")),
        401,
        "A still honours a logged-out session"
    );

    // An access token revoked on A: refused on B at the very next request.
    let second = post_login(a, "/auth/login", "erin", pw);
    let created = second.send(a, "POST", "/auth/tokens", r#"{"name":"ci"}"#);
    assert_eq!(status(&created), 201, "{created}");
    let created = body(&created);
    let token = created["token"].as_str().expect("token");
    let token_id = created["id"].as_i64().expect("id");
    assert_eq!(bearer_me(b, token), 200);
    let revoked = second.send(a, "DELETE", &format!("/auth/tokens/{token_id}"), "");
    assert_eq!(status(&revoked), 204, "{revoked}");
    assert_eq!(bearer_me(b, token), 401, "B accepts a token revoked on A");

    // A password change on B ends the sessions on A (here: the one A has cached).
    let on_b = post_login(b, "/auth/login", "erin", pw);
    assert_eq!(status(&second.get(a, "/auth/me")), 200);
    let changed = on_b.send(
        b,
        "POST",
        "/auth/password",
        &format!(r#"{{"current_password":"{pw}","new_password":"another long one"}}"#),
    );
    assert_eq!(status(&changed), 200, "{changed}");
    assert_eq!(
        status(&second.get(a, "/auth/me")),
        401,
        "A honours the password change"
    );
    drop(cleanup);
}
