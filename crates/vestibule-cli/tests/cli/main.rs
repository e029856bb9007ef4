//! Tests of the `vestibule` binary: each runs it in a fresh temporary directory with every
//! `VESTIBULE_*` variable removed, so nothing from the developer's environment leaks in.

mod admin;
mod args;
mod code_order;
mod config_check;
mod dev;
mod doctor;
mod gateway;
mod init;
mod oidc;
mod outbox;
mod readme;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod config_errors;
mod faults;
mod scale_out;

fn vestibule(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vestibule"));
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("VESTIBULE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = vestibule(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vestibule");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn user_add_reads_the_password_from_stdin_and_user_list_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        "a good password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        dir.path().join("vestibule.db").exists(),
        "default database in the working directory"
    );
    let out = vestibule(dir.path())
        .args(["user", "list"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let listing = text(&out);
    assert!(listing.contains("alice"), "{listing}");
    assert!(!listing.contains("a good password"));
}

#[test]
fn user_add_refuses_a_weak_password_and_a_taken_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "bob", "--password-stdin"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("at least 8"), "{}", text(&out));
    let ok = run_with_stdin(
        dir.path(),
        &["user", "add", "bob", "--password-stdin"],
        "long enough pw\n",
    );
    assert!(ok.status.success(), "{}", text(&ok));
    let dup = run_with_stdin(
        dir.path(),
        &["user", "add", "BOB", "--password-stdin"],
        "long enough pw\n",
    );
    assert!(!dup.status.success());
    assert!(text(&dup).contains("taken"), "{}", text(&dup));
}

#[test]
fn there_is_no_way_to_pass_a_password_in_argv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["user", "add", "carol", "--password", "secret123"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "a --password flag must not exist");
}

#[test]
fn config_check_accepts_defaults_and_explains_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("configuration is valid"));
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "listen = \"nowhere\"\n[session]\nidle_timeout = \"soon\"\n[csrf]\ntrusted_origins = [\"https://*.acme.com\"]\n",
    )
    .expect("write config");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let t = text(&out);
    for key in ["listen", "session.idle_timeout", "csrf.trusted_origins[0]"] {
        assert!(t.contains(key), "{key} missing from:\n{t}");
    }
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "lisen = \"127.0.0.1:1\"\n",
    )
    .expect("write config");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("lisen"),
        "unknown keys are named: {}",
        text(&out)
    );
}

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "listen = \"127.0.0.1:7001\"\n",
    )
    .expect("write config");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .env("VESTIBULE_LISTEN", "127.0.0.1:7002")
        .output()
        .expect("run");
    assert!(text(&out).contains("127.0.0.1:7002"), "{}", text(&out));
    let out = vestibule(dir.path())
        .args(["--database", "other.db", "config", "check"])
        .env("VESTIBULE_DATABASE_URL", "env.db")
        .output()
        .expect("run");
    assert!(text(&out).contains("other.db"), "{}", text(&out));
}

#[test]
fn a_profile_overlays_the_file_for_development() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "public_url = \"https://api.acme.test\"\nspa_origins = [\"https://www.acme.test\"]\n\n\
         [profile.dev]\npublic_url = \"http://localhost:8000\"\nspa_origins = [\"http://localhost:3000\"]\n",
    )
    .expect("write config");
    let prod = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(prod.status.success(), "{}", text(&prod));
    assert!(
        text(&prod).contains("https://www.acme.test"),
        "{}",
        text(&prod)
    );
    assert!(
        text(&prod).contains("__Host-vestibule_session"),
        "{}",
        text(&prod)
    );
    let dev = vestibule(dir.path())
        .args(["--profile", "dev", "config", "check"])
        .output()
        .expect("run");
    assert!(dev.status.success(), "{}", text(&dev));
    assert!(
        text(&dev).contains("http://localhost:3000"),
        "{}",
        text(&dev)
    );
    assert!(
        !text(&dev).contains("https://www.acme.test"),
        "{}",
        text(&dev)
    );
    let env = vestibule(dir.path())
        .args(["config", "check"])
        .env("VESTIBULE_PROFILE", "dev")
        .output()
        .expect("run");
    assert!(
        text(&env).contains("http://localhost:3000"),
        "{}",
        text(&env)
    );
    let missing = vestibule(dir.path())
        .args(["--profile", "staging", "config", "check"])
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("profile.staging"),
        "{}",
        text(&missing)
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One HTTP/1.1 exchange over a fresh connection; the raw response text.
fn http(port: u16, method: &str, path: &str, extra: &str, body: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

fn http_get(port: u16, path: &str) -> Option<String> {
    http(port, "GET", path, "", "")
}

/// Starts `vestibule serve --demo` in `dir` on a free port and waits for /healthz.
/// Its output goes to `server.out` / `server.err` in `dir` (a pipe nobody reads could fill up).
fn start_server(dir: &Path) -> (Server, u16) {
    start_server_with(dir, &[])
}

fn start_server_with(dir: &Path, env: &[(&str, &str)]) -> (Server, u16) {
    start_serve(dir, &["--demo"], env)
}

/// Starts `vestibule serve {flags} --listen 127.0.0.1:{a free port}` in `dir`.
fn start_serve(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> (Server, u16) {
    let port = free_port();
    let out = std::fs::File::create(dir.join("server.out")).expect("log file");
    let err = std::fs::File::create(dir.join("server.err")).expect("log file");
    let listen = format!("127.0.0.1:{port}");
    let child = vestibule(dir)
        .arg("serve")
        .args(flags)
        .args(["--listen", &listen])
        .envs(env.iter().copied())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/healthz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

#[test]
fn user_disable_from_the_cli_ends_sessions_on_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = start_server(dir.path());
    let res = http(
        port,
        "POST",
        "/auth/signup",
        "Content-Type: application/json\r\n",
        r#"{"username":"dora","password":"a long password"}"#,
    )
    .expect("signup");
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let cookie = res
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with("vestibule_session="))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    let me = || {
        http(
            port,
            "GET",
            "/auth/me",
            &format!("Cookie: {cookie}\r\n"),
            "",
        )
        .unwrap_or_default()
    };
    assert!(me().starts_with("HTTP/1.1 200"));
    let out = vestibule(dir.path())
        .args(["user", "disable", "dora"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ended 1 session"), "{}", text(&out));
    // The server's read cache notices the outside commit within about a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !me().starts_with("HTTP/1.1 401") {
        assert!(
            Instant::now() < deadline,
            "the disabled user's session still works"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_demo_answers_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port) = start_server(dir.path());
    let page = http_get(port, "/").expect("demo page");
    assert!(page.contains("text/html"), "{page}");
    let pid = server.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = server.0.try_wait().expect("wait") {
            assert!(st.success(), "graceful shutdown exits 0, got {st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::fs::read_to_string(dir.path().join("server.out")).expect("stdout");
    assert!(
        out.contains(&format!("http://localhost:{port}/")),
        "demo prints the URL: {out}"
    );
}

#[test]
fn serve_without_demo_serves_no_demo_page_and_the_config_key_turns_it_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port) = start_serve(dir.path(), &[], &[]);
    for path in ["/", "/demo/counter", "/demo/app.js"] {
        let res = http_get(port, path).expect("answer");
        assert!(res.starts_with("HTTP/1.1 404"), "{path}: {res}");
        assert!(res.contains("application/json"), "{path}: {res}");
        assert!(res.contains(r#""code":"not_found""#), "{path}: {res}");
    }
    let out = std::fs::read_to_string(dir.path().join("server.out")).expect("stdout");
    assert!(!out.contains("Vestibule demo"), "no demo banner: {out}");
    stop(&mut server);

    std::fs::write(dir.path().join("vestibule.toml"), "demo = true\n").expect("config");
    let (_server, port) = start_serve(dir.path(), &["--config", "vestibule.toml"], &[]);
    let page = http_get(port, "/").expect("demo page");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    let counter = http_get(port, "/demo/counter").expect("counter");
    assert!(counter.ends_with(r#"{"counter":0}"#), "{counter}");
}

fn stop(server: &mut Server) {
    let pid = server.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_password_token_or_csrf_token_reaches_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port) = start_server_with(dir.path(), &[("VESTIBULE_LOG", "trace")]);
    let password = "pw-Zq8vLx3rTb";
    let res = http(
        port,
        "POST",
        "/auth/signup",
        "Content-Type: application/json\r\n",
        &format!(r#"{{"username":"eve","password":"{password}"}}"#),
    )
    .expect("signup");
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let res = http(
        port,
        "POST",
        "/auth/login",
        "Content-Type: application/json\r\n",
        &format!(r#"{{"username":"eve","password":"{password}"}}"#),
    )
    .expect("login");
    let (token, csrf) = session_and_csrf(&res);
    let me = http(
        port,
        "GET",
        "/auth/me",
        &format!("Cookie: vestibule_session={token}\r\n"),
        "",
    )
    .expect("me");
    assert!(me.starts_with("HTTP/1.1 200"), "{me}");
    let logout = format!("Cookie: vestibule_session={token}\r\nX-CSRF-Token: {csrf}\r\n");
    let res = http(port, "POST", "/auth/logout", &logout, "").expect("logout");
    assert!(res.starts_with("HTTP/1.1 204"), "{res}");
    stop(&mut server);
    let logs = std::fs::read_to_string(dir.path().join("server.err")).expect("logs");
    assert!(
        logs.contains("user logged in"),
        "the logs were captured: {logs}"
    );
    for secret in [password, &token, &token[4..30], &csrf] {
        assert!(!logs.contains(secret), "a secret reached the log: {secret}");
    }
}

#[test]
fn token_create_list_and_revoke_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "ops", "--password-stdin"],
        "a long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = vestibule(dir.path())
        .args([
            "token", "create", "--user", "ops", "--name", "deploy", "--scope", "read", "--scope",
            "write",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    let secret = printed
        .lines()
        .find(|l| l.starts_with("vpat_"))
        .expect("the secret is printed once")
        .to_owned();
    let list = text(
        &vestibule(dir.path())
            .args(["token", "list", "--user", "ops"])
            .output()
            .expect("run"),
    );
    assert!(
        list.contains("deploy") && list.contains("read,write"),
        "{list}"
    );
    assert!(!list.contains(&secret), "list never shows the secret");
    assert!(
        list.contains(&secret[..12]),
        "list shows the display prefix: {list}"
    );
    let bad = vestibule(dir.path())
        .args([
            "token", "create", "--user", "ops", "--name", "x", "--days", "100000",
        ])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(text(&bad).contains("between 1 and 365"), "{}", text(&bad));
    let id = list
        .lines()
        .find(|l| l.contains("deploy"))
        .and_then(|l| l.split_whitespace().next())
        .expect("id column")
        .to_owned();
    let out = vestibule(dir.path())
        .args(["token", "revoke", "--user", "ops", &id])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let list = text(
        &vestibule(dir.path())
            .args(["token", "list", "--user", "ops"])
            .output()
            .expect("run"),
    );
    assert!(!list.contains("deploy"), "{list}");
    let again = vestibule(dir.path())
        .args(["token", "revoke", "--user", "ops", &id])
        .output()
        .expect("run");
    assert!(!again.status.success(), "revoking twice fails");
}

/// The `Set-Cookie: vestibule_session=` value and the body's `csrf_token` of a raw response.
/// `vestibule user disable` with `session.store = "cookie"`: no store holds the sealed session, the
/// generation bump in the users table ends it on the running server's next request.
#[test]
fn user_disable_from_the_cli_ends_cookie_store_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("VESTIBULE_SESSION__STORE", "cookie"),
        (
            "VESTIBULE_SESSION__COOKIE_KEYS",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        ),
    ];
    let (_server, port) = start_server_with(dir.path(), &env);
    let res = http(
        port,
        "POST",
        "/auth/signup",
        "Content-Type: application/json\r\n",
        r#"{"username":"cora","password":"a long password"}"#,
    )
    .expect("signup");
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let (cookie, _) = session_and_csrf(&res);
    assert!(cookie.starts_with("v1."), "a sealed session: {cookie}");
    let me = || {
        http(
            port,
            "GET",
            "/auth/me",
            &format!("Cookie: vestibule_session={cookie}\r\n"),
            "",
        )
        .unwrap_or_default()
    };
    assert!(me().starts_with("HTTP/1.1 200"), "{}", me());
    let out = vestibule(dir.path())
        .envs(env)
        .args(["user", "disable", "cora"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("generation was bumped"),
        "{}",
        text(&out)
    );
    let res = me();
    assert!(
        res.starts_with("HTTP/1.1 401") && res.contains("session_expired"),
        "refused at once: {res}"
    );
}

fn session_and_csrf(res: &str) -> (String, String) {
    let token = res
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: vestibule_session="))
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_owned();
    let csrf = res
        .split("\"csrf_token\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("csrf token")
        .to_owned();
    (token, csrf)
}

#[test]
fn audit_events_are_json_lines_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port) = start_server_with(
        dir.path(),
        &[
            ("VESTIBULE_LOG_FORMAT", "json"),
            ("VESTIBULE_RATE_LIMITS__LOGIN_PER_USER", "2/h"),
        ],
    );
    let json = "Content-Type: application/json\r\n";
    let password = "pw-Audit-9fK2mQ";
    let new_password = "pw-Audit-New-7hX";
    let creds = format!(r#"{{"username":"ada","password":"{password}"}}"#);
    let signup = http(port, "POST", "/auth/signup", json, &creds).expect("signup");
    assert!(signup.starts_with("HTTP/1.1 201"), "{signup}");
    let wrong = r#"{"username":"ada","password":"not-the-password"}"#;
    let res = http(port, "POST", "/auth/login", json, wrong).expect("login");
    assert!(res.starts_with("HTTP/1.1 401"), "{res}");
    let res = http(port, "POST", "/auth/login", json, &creds).expect("login");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let (token, csrf) = session_and_csrf(&res);
    let auth = format!("Cookie: vestibule_session={token}\r\nX-CSRF-Token: {csrf}\r\n{json}");
    // CSRF refusal: the cookie without the token.
    let res = http(
        port,
        "POST",
        "/auth/logout",
        &format!("Cookie: vestibule_session={token}\r\n"),
        "",
    )
    .expect("csrf");
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    // CORS refusal: a preflight from a page nobody allowed.
    let res = http(
        port,
        "OPTIONS",
        "/auth/login",
        "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n",
        "",
    )
    .expect("preflight");
    assert!(res.starts_with("HTTP/1.1 403"), "{res}");
    let res = http(port, "POST", "/auth/tokens", &auth, r#"{"name":"ci"}"#).expect("token");
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let pat = res
        .split("\"token\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("token secret")
        .to_owned();
    let id = res
        .split("\"id\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .expect("token id")
        .to_owned();
    let res = http(port, "DELETE", &format!("/auth/tokens/{id}"), &auth, "").expect("revoke");
    assert!(res.starts_with("HTTP/1.1 204"), "{res}");
    let change = format!(r#"{{"current_password":"{password}","new_password":"{new_password}"}}"#);
    let res = http(port, "POST", "/auth/password", &auth, &change).expect("password");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let (token2, csrf2) = session_and_csrf(&res);
    let auth2 = format!("Cookie: vestibule_session={token2}\r\nX-CSRF-Token: {csrf2}\r\n");
    let res = http(port, "POST", "/auth/logout-all", &auth2, "").expect("logout-all");
    assert!(res.starts_with("HTTP/1.1 204"), "{res}");
    // The account's budget (2/h) is spent: the next attempt trips the limit.
    let res = http(port, "POST", "/auth/login", json, wrong).expect("login");
    assert!(res.starts_with("HTTP/1.1 429"), "{res}");
    stop(&mut server);

    let logs = std::fs::read_to_string(dir.path().join("server.err")).expect("logs");
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "vestibule::audit")
        .collect();
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["event"].as_str())
        .collect();
    for expected in [
        "signup",
        "login.failure",
        "login.success",
        "csrf.refused",
        "cors.refused",
        "token.create",
        "token.revoke",
        "password.change",
        "session.revoke",
        "rate_limit",
    ] {
        assert!(
            names.contains(&expected),
            "no {expected} event in {names:?}"
        );
    }
    let failure = events
        .iter()
        .find(|e| e["fields"]["event"] == "login.failure")
        .expect("failure event");
    assert_eq!(failure["fields"]["reason"], "invalid_credentials");
    assert_eq!(failure["fields"]["client_ip"], "127.0.0.1");
    for secret in [password, new_password, &token, &token2, &csrf, &csrf2, &pat] {
        assert!(!logs.contains(secret), "a secret reached the log: {secret}");
    }
}

#[test]
fn a_busy_port_is_named_once_with_the_way_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = vestibule(dir.path())
        .args(["serve", "--listen", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains(&format!("cannot listen on {addr}")), "{said}");
    assert!(said.contains("--listen or VESTIBULE_LISTEN"), "{said}");
    assert_eq!(
        said.matches("os error 98").count(),
        1,
        "the io error once, not twice: {said}"
    );
}

#[test]
fn listen_port_zero_prints_the_port_the_os_chose() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = vestibule(dir.path())
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    drop(server);
    assert!(line.contains("open http://localhost:"), "{line}");
    assert!(
        !line.contains("localhost:0/"),
        "the real port, not 0: {line}"
    );
}
