//! `vestibule doctor` end to end: exit codes (0 every family works, 1 one fails, 2 usage),
//! offline configuration checks, and a probe of a running `vestibule serve`.

use std::path::Path;

use super::{http, run_with_stdin, start_server_with, stop, text, vestibule};

fn doctor(dir: &Path, args: &[&str]) -> std::process::Output {
    vestibule(dir)
        .arg("doctor")
        .args(args)
        .output()
        .expect("run doctor")
}

const LOCAL_CONFIG: &str =
    "public_url = \"http://localhost:8000\"\nspa_origins = [\"http://localhost:3000\"]\n";

#[test]
fn doctor_usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        // Neither --api nor a configuration to check.
        &["--page", "http://localhost:3000"][..],
        &["--page", "http://localhost:3000", "--api", "not a url"],
        &["--api", "http://localhost:8000/x"],
        &[
            "--page",
            "http://localhost:3000",
            "--api",
            "http://localhost:8000/x",
            "--credentials",
            "sometimes",
        ],
        &[
            "--page",
            "http://localhost:3000",
            "--api",
            "http://localhost:8000/x",
            "--header",
            "no colon",
        ],
        &[
            "--page",
            "http://localhost:3000",
            "--api",
            "http://localhost:8000/x",
            "--json-body",
            "{not json",
        ],
        &[
            "--page",
            "http://localhost:3000",
            "--api",
            "http://localhost:8000/x",
            "--resolve",
            "api.test:nowhere",
        ],
        &["--no-such-flag"],
    ] {
        let out = doctor(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

#[test]
fn doctor_checks_a_configuration_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("site.toml"), LOCAL_CONFIG).expect("write");
    let out = doctor(
        dir.path(),
        &["--config", "site.toml", "--page", "http://localhost:3000"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("session works  Chromium, third-party cookies blocked"),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colour when piped");

    let out = doctor(
        dir.path(),
        &["--config", "site.toml", "--page", "http://127.0.0.1:3000"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("spa_origins = [\"http://127.0.0.1:3000\"]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("localhost and 127.0.0.1 are different sites"),
        "{stdout}"
    );

    let out = doctor(
        dir.path(),
        &[
            "--config",
            "site.toml",
            "--page",
            "http://localhost:3000",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["verdicts"].as_array().map(Vec::len), Some(4));
    assert!(
        v["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .all(|x| x["status"] == "pass")
    );

    // A configuration the server would refuse is reported, exit 1.
    std::fs::write(
        dir.path().join("bad.toml"),
        "public_url = \"http://localhost:8000\"\nspa_origins = [\"http://127.0.0.1:3000\"]\n",
    )
    .expect("write");
    let out = doctor(
        dir.path(),
        &["--config", "bad.toml", "--page", "http://127.0.0.1:3000"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("127.0.0.1"), "{}", text(&out));
}

#[test]
fn doctor_probes_a_running_server_and_exits_by_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        "a good password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_server, port) = start_server_with(
        dir.path(),
        &[
            ("VESTIBULE_PUBLIC_URL", "http://127.0.0.1:8000"),
            ("VESTIBULE_SPA_ORIGINS", "http://127.0.0.1:3000"),
        ],
    );
    let api = format!("http://127.0.0.1:{port}/auth/login");
    let base = [
        "doctor",
        "--page",
        "http://127.0.0.1:3000",
        "--api",
        api.as_str(),
        "--username",
        "alice",
        "--password-stdin",
    ];
    let out = run_with_stdin(dir.path(), &base, "a good password\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("a good password"));

    let mut silent = base.to_vec();
    silent.extend(["--credentials", "same-origin"]);
    let out = run_with_stdin(dir.path(), &silent, "a good password\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("credentials: 'include'"),
        "{}",
        text(&out)
    );

    // Nobody listening: exit 1 with a hint, not a panic.
    let out = doctor(
        dir.path(),
        &[
            "--page",
            "http://127.0.0.1:3000",
            "--api",
            "http://127.0.0.1:9/x",
            "--timeout",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("hint:"), "{}", text(&out));
}

#[test]
fn doctor_scan_lists_calls_without_credentials_by_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(
        src.join("api.ts"),
        "export const login = (body) =>\n  fetch('http://localhost:8000/auth/login', {method: 'POST', body})\nexport const me = () => fetch('http://localhost:8000/auth/me', {credentials: 'include'})\n",
    )
    .expect("write");
    let out = doctor(
        dir.path(),
        &["--scan", "src", "--api", "http://localhost:8000"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("src/api.ts:2: fetch:"), "{stdout}");
    assert!(!stdout.contains("api.ts:3"), "{stdout}");
    assert!(
        stdout.contains("fix: fetch(url, {credentials: 'include'})"),
        "{stdout}"
    );

    std::fs::write(src.join("api.ts"), "fetch('/auth/me')\n").expect("write");
    let out = doctor(dir.path(), &["--scan", "src", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["scan"].as_array().map(Vec::len), Some(0));

    let out = doctor(dir.path(), &["--scan", "no-such-dir"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn serve_logs_a_dropped_session_cookie_once_per_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "alice", "--password-stdin"],
        "a good password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let (mut server, port) = start_server_with(
        dir.path(),
        &[
            ("VESTIBULE_DEBUG_ENDPOINT", "true"),
            ("VESTIBULE_SPA_ORIGINS", "http://localhost:3000"),
        ],
    );
    let origin =
        "Origin: http://localhost:3000\r\nUser-Agent: spa\r\nContent-Type: application/json\r\n";
    let login = http(
        port,
        "POST",
        "/auth/login",
        origin,
        r#"{"username":"alice","password":"a good password"}"#,
    )
    .expect("login answer");
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    for _ in 0..3 {
        let me = http(port, "GET", "/auth/me", origin, "").expect("me answer");
        assert!(me.starts_with("HTTP/1.1 401"), "{me}");
    }
    stop(&mut server);
    let logs = std::fs::read_to_string(dir.path().join("server.err")).expect("logs");
    let needle = "the browser did not store or send the session cookie";
    assert_eq!(logs.matches(needle).count(), 1, "{logs}");
    assert!(logs.contains("credentials: 'include'"), "{logs}");
    assert!(!logs.contains("a good password"));
}
