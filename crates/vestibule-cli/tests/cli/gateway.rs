//! `vestibule serve --static DIR` from the command line.

use std::time::{Duration, Instant};

use super::{Server, free_port, http, vestibule};

#[test]
fn serve_static_serves_the_built_spa_with_route_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dist = dir.path().join("dist");
    std::fs::create_dir(&dist).expect("mkdir");
    std::fs::write(dist.join("index.html"), "<p>built spa</p>").expect("write");
    let port = free_port();
    let err = std::fs::File::create(dir.path().join("serve.err")).expect("log file");
    let child = vestibule(dir.path())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--static",
            "dist",
        ])
        .stderr(err)
        .spawn()
        .expect("spawn");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/healthz", "", "").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        let log = std::fs::read_to_string(dir.path().join("serve.err")).unwrap_or_default();
        assert!(Instant::now() < deadline, "server did not start: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = http(port, "GET", "/account/settings", "", "").expect("route");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("cache-control: no-cache"), "{page}");
    assert!(page.ends_with("<p>built spa</p>"), "{page}");
    let me = http(port, "GET", "/auth/me", "", "").expect("me");
    assert!(
        me.starts_with("HTTP/1.1 401"),
        "/auth stays Vestibule's: {me}"
    );
}

#[test]
fn serve_static_refuses_a_directory_without_index_html() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--static", "nowhere"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text = super::text(&out);
    assert!(
        text.contains("static_dir") && text.contains("index.html"),
        "{text}"
    );
}
