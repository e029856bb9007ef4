//! Faults: the process killed mid-storm, databases that cannot be opened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{http, session_and_csrf, start_server_with, text, vestibule};

/// Lifts the login limits: the storm is many logins from one address, on purpose.
const NO_LIMITS: [(&str, &str); 3] = [
    ("VESTIBULE_RATE_LIMITS__LOGIN_PER_IP", "off"),
    ("VESTIBULE_RATE_LIMITS__LOGIN_PER_USER", "off"),
    ("VESTIBULE_RATE_LIMITS__SIGNUP_PER_IP", "off"),
];

#[test]
fn kill_9_during_a_login_storm_loses_no_acknowledged_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, port) = start_server_with(dir.path(), &NO_LIMITS);
    let json = "Content-Type: application/json\r\n";
    for i in 0..8 {
        let body = format!(r#"{{"username":"storm{i}","password":"storm password {i}"}}"#);
        let res = http(port, "POST", "/auth/signup", json, &body).expect("signup");
        assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    }
    // Eight clients log in as fast as they can (each at most 200 times) until the kill.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop_at = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                let body = format!(r#"{{"username":"storm{i}","password":"storm password {i}"}}"#);
                for _ in 0..200 {
                    if Instant::now() > stop_at {
                        break;
                    }
                    let Some(res) = http(port, "POST", "/auth/login", json, &body) else {
                        break; // the server is gone
                    };
                    if res.starts_with("HTTP/1.1 200") {
                        let (token, _) = session_and_csrf(&res);
                        acknowledged.lock().expect("lock").push(token);
                    } else if !res.is_empty() {
                        assert!(
                            !res.starts_with("HTTP/1.1 5"),
                            "server error mid-storm: {res}"
                        );
                    }
                }
            })
        })
        .collect();
    // Let the storm run, then SIGKILL: no graceful shutdown, no WAL checkpoint.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().expect("lock").len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.0.kill().expect("kill -9");
    let _ = server.0.wait();
    for w in workers {
        w.join().expect("worker");
    }
    let tokens = acknowledged.lock().expect("lock").clone();
    assert!(
        tokens.len() >= 40,
        "only {} logins before the kill",
        tokens.len()
    );

    // Restart on the same files: it opens, and every login that answered 200 is a live session.
    let (_server, port) = start_server_with(dir.path(), &NO_LIMITS);
    for token in &tokens {
        let me = http(
            port,
            "GET",
            "/auth/me",
            &format!("Cookie: vestibule_session={token}\r\n"),
            "",
        )
        .expect("me");
        assert!(
            me.starts_with("HTTP/1.1 200"),
            "a session acknowledged before the kill is gone: {me}"
        );
    }
    let out = vestibule(dir.path())
        .args(["user", "list"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("storm7"), "{}", text(&out));
}

#[test]
fn a_missing_or_unwritable_database_location_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").expect("file");
    for (db, why) in [
        (
            dir.path().join("missing/dir/vestibule.db"),
            "missing directory",
        ),
        (
            file.join("vestibule.db"),
            "a file where a directory should be",
        ),
        // procfs refuses new files even to root: a read-only location.
        ("/proc/vestibule-test.db".into(), "read-only location"),
    ] {
        let out = vestibule(dir.path())
            .args([
                "--database",
                &db.display().to_string(),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .output()
            .expect("run");
        let said = text(&out);
        assert!(!out.status.success(), "{why}: started anyway");
        assert!(!said.contains("panicked"), "{why}: {said}");
        assert!(
            said.contains(&db.display().to_string()),
            "{why}: the path is not named: {said}"
        );
        assert!(
            said.contains("directory"),
            "{why}: no hint about the directory: {said}"
        );
    }
}
