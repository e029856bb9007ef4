//! `vestibule dev` in front of a fake frontend dev server and a fake API backend.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Server, free_port, http, text, vestibule};

/// A tiny HTTP/1.1 server on a thread: answers `<label> <path> user=<X-Vestibule-Username>` to
/// at most 50 connections, then stops.
fn fake(label: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
            let user = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("x-vestibule-username: ")
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "-".into());
            let body = format!("{label} {path} user={user}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn start_dev(dir: &Path, args: &[String]) -> (Server, u16) {
    let port = free_port();
    let out = std::fs::File::create(dir.join("dev.out")).expect("log file");
    let err = std::fs::File::create(dir.join("dev.err")).expect("log file");
    let child = vestibule(dir)
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/healthz", "", "").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        let log = std::fs::read_to_string(dir.join("dev.err")).unwrap_or_default();
        assert!(Instant::now() < deadline, "dev proxy did not start: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

#[test]
fn dev_serves_auth_itself_and_forwards_the_api_and_the_frontend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let front = fake("frontend");
    let api = fake("api");
    let (_server, port) = start_dev(
        dir.path(),
        &[
            "--frontend".into(),
            format!("http://127.0.0.1:{front}"),
            "--api".into(),
            format!("/api=http://127.0.0.1:{api}"),
        ],
    );
    let page = http(port, "GET", "/", "", "").expect("index");
    assert!(page.ends_with("frontend / user=-"), "{page}");
    let route = http(port, "GET", "/notes/42?tab=1", "", "").expect("client route");
    assert!(
        route.ends_with("frontend /notes/42?tab=1 user=-"),
        "{route}"
    );
    let res = http(
        port,
        "POST",
        "/auth/signup",
        "Content-Type: application/json\r\n",
        r#"{"username":"dev","password":"a long password"}"#,
    )
    .expect("signup");
    assert!(
        res.starts_with("HTTP/1.1 201"),
        "signup is open in dev: {res}"
    );
    let cookie_name = format!("vestibule_session_{port}");
    let cookie = res
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with(&format!("{cookie_name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("the session cookie is named per port ({cookie_name}): {res}"))
        .to_owned();
    // Development mode: the debug endpoint (and with it the live cookie-drop detection) is on.
    let debug = http(port, "GET", "/auth/_debug", "", "").expect("debug");
    assert!(debug.starts_with("HTTP/1.1 200"), "{debug}");
    let unknown = http(port, "GET", "/auth/nope", "", "").expect("auth 404");
    assert!(
        unknown.starts_with("HTTP/1.1 404") && unknown.contains("not_found"),
        "/auth never reaches the frontend: {unknown}"
    );
    let api_res = http(
        port,
        "GET",
        "/api/notes",
        &format!("Cookie: {cookie}\r\n"),
        "",
    )
    .expect("api");
    assert!(api_res.ends_with("api /api/notes user=dev"), "{api_res}");
    let out = std::fs::read_to_string(dir.path().join("dev.out")).expect("stdout");
    assert!(out.contains(&format!("http://localhost:{port}/")), "{out}");
}

#[test]
fn dev_names_a_dead_frontend_and_what_to_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = free_port();
    let (_server, port) = start_dev(
        dir.path(),
        &["--frontend".into(), format!("http://127.0.0.1:{dead}")],
    );
    let page = http(port, "GET", "/", "Accept: text/html\r\n", "").expect("answer");
    assert!(page.starts_with("HTTP/1.1 502"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    assert!(
        page.contains(&format!(
            "the frontend dev server at http://127.0.0.1:{dead} is not answering — start it (npm run dev)"
        )),
        "{page}"
    );
    assert!(
        page.contains("location.reload"),
        "the dev error page recovers by itself"
    );
    let json = http(port, "GET", "/src/main.ts", "Accept: */*\r\n", "").expect("answer");
    assert!(json.contains("\"code\":\"upstream_unavailable\""), "{json}");
}

#[test]
fn dev_without_a_frontend_explains_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["dev", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(text(&out).contains("--frontend"), "{}", text(&out));
}

#[test]
fn dev_reads_its_settings_from_the_dev_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let front = fake("frontend");
    let api = fake("backend");
    let port = free_port();
    std::fs::write(
        dir.path().join("vestibule.toml"),
        format!(
            "public_url = \"https://api.acme.test\"\nspa_origins = [\"https://www.acme.test\"]\n\n\
             [dev]\nlisten = \"127.0.0.1:{port}\"\nfrontend = \"http://127.0.0.1:{front}\"\n\
             frontend_command = \"pnpm dev\"\napi = [\"/graphql=http://127.0.0.1:{api}\"]\n"
        ),
    )
    .expect("write config");
    let out = std::fs::File::create(dir.path().join("dev.out")).expect("log file");
    let err = std::fs::File::create(dir.path().join("dev.err")).expect("log file");
    let _server = Server(
        vestibule(dir.path())
            .arg("dev")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/healthz", "", "").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        let log = std::fs::read_to_string(dir.path().join("dev.err")).unwrap_or_default();
        assert!(Instant::now() < deadline, "dev proxy did not start: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let gql = http(port, "GET", "/graphql", "", "").expect("api");
    assert!(gql.ends_with("backend /graphql user=-"), "{gql}");
    let page = http(port, "GET", "/", "", "").expect("page");
    assert!(page.ends_with("frontend / user=-"), "{page}");
}
