//! The OpenID providers of a configuration, seen by `vestibule doctor --config` (the issuer's
//! discovery fetched, the callback, the page as a `return_to`) and `config check`; and
//! `vestibule user delete` on a running server.

use std::io::{Read, Write};
use std::net::TcpListener;

use super::{http, start_server, text, vestibule};

/// A loopback issuer whose discovery document names `issuer` (answers `n` requests).
fn discovery_server(n: usize, named: impl Fn(&str) -> String + Send + 'static) -> String {
    discovery_server_with(n, named, "")
}

/// [`discovery_server`] with `extra` members in the document (`,"key":value…`).
fn discovery_server_with(
    n: usize,
    named: impl Fn(&str) -> String + Send + 'static,
    extra: &'static str,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let named = named(&issuer);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = format!(
                r#"{{"issuer":"{named}","authorization_endpoint":"{named}/auth","jwks_uri":"{named}/jwks"{extra}}}"#
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    issuer
}

fn config(issuer: &str, public_url: bool) -> String {
    format!(
        "{}spa_origins = [\"http://localhost:3000\"]\n[[oidc.provider]]\nname = \"corp\"\nissuer = \"{issuer}\"\nclient_id = \"vestibule\"\nclient_secret = \"a-client-secret\"\n",
        if public_url {
            "public_url = \"http://localhost:8000\"\n"
        } else {
            ""
        }
    )
}

fn doctor(dir: &std::path::Path, page: &str) -> (Option<i32>, String) {
    let out = vestibule(dir)
        .args(["doctor", "--config", "site.toml", "--page", page])
        .output()
        .expect("run doctor");
    (out.status.code(), text(&out))
}

#[test]
fn doctor_fails_an_issuer_without_discovery_and_a_page_that_cannot_be_a_return_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens there.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    std::fs::write(dir.path().join("site.toml"), config(&closed, true)).expect("write");
    let (code, out) = doctor(dir.path(), "http://localhost:3000");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("oidc-discovery"), "{out}");
    assert!(
        out.contains("does not answer its discovery document"),
        "{out}"
    );

    // An issuer whose document names another issuer: refused at login, so a failure here.
    let other = discovery_server(1, |_| "https://elsewhere.example".into());
    std::fs::write(dir.path().join("site.toml"), config(&other, true)).expect("write");
    let (code, out) = doctor(dir.path(), "http://localhost:3000");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("names another issuer"), "{out}");

    // A working issuer: the same configuration passes.
    let good = discovery_server(2, |own| own.to_owned());
    std::fs::write(dir.path().join("site.toml"), config(&good, true)).expect("write");
    let (code, out) = doctor(dir.path(), "http://localhost:3000");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("oidc-discovery"), "listed as passing: {out}");
    assert!(!out.contains("oidc_return_to_refused"), "{out}");

    // A page on an origin outside the policy: a provider login could not come back to it.
    let (code, out) = doctor(dir.path(), "http://localhost:4000");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("oidc_return_to_refused"), "{out}");
}

/// A provider that does not take the configured `client_auth` would refuse every login at the
/// code exchange (502 `oidc_client_rejected`): doctor says so, and which method to set.
#[test]
fn doctor_fails_a_client_auth_method_the_provider_does_not_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let post_only = discovery_server_with(
        1,
        |own| own.to_owned(),
        r#","token_endpoint_auth_methods_supported":["client_secret_post"]"#,
    );
    // `client_secret` alone: client_secret_basic, the default.
    std::fs::write(dir.path().join("site.toml"), config(&post_only, true)).expect("write");
    let (code, out) = doctor(dir.path(), "http://localhost:3000");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("oidc-client-auth"), "{out}");
    assert!(out.contains("client_secret_basic"), "{out}");
    assert!(
        out.contains(r#"client_auth = "client_secret_post""#),
        "the fix: {out}"
    );

    // Configured as the provider lists: it passes.
    let post_only = discovery_server_with(
        1,
        |own| own.to_owned(),
        r#","token_endpoint_auth_methods_supported":["client_secret_post"]"#,
    );
    let toml = format!(
        "{}client_auth = \"client_secret_post\"\n",
        config(&post_only, true)
    );
    std::fs::write(dir.path().join("site.toml"), toml).expect("write");
    let (code, out) = doctor(dir.path(), "http://localhost:3000");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("oidc-client-auth"), "listed as passing: {out}");
}

#[test]
fn config_check_lists_the_callback_to_register_and_warns_without_public_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vestibule.toml"),
        config("https://idp.example", true),
    )
    .expect("write");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("register http://localhost:8000/auth/oidc/corp/callback"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("public_url is unset"),
        "{}",
        text(&out)
    );

    std::fs::write(
        dir.path().join("vestibule.toml"),
        config("https://idp.example", false),
    )
    .expect("write");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("warning: oidc.provider \"corp\": public_url is unset"),
        "{said}"
    );
}

#[test]
fn user_delete_removes_the_account_and_ends_its_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = start_server(dir.path());
    let res = http(
        port,
        "POST",
        "/auth/signup",
        "Content-Type: application/json\r\n",
        r#"{"username":"eve","password":"a long password"}"#,
    )
    .expect("signup");
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let out = vestibule(dir.path())
        .args(["token", "create", "--user", "eve", "--name", "ci"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));

    let out = vestibule(dir.path())
        .args(["user", "delete", "eve"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deleted eve"), "{}", text(&out));
    let out = vestibule(dir.path())
        .args(["user", "list"])
        .output()
        .expect("run");
    assert!(
        !text(&out)
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("eve")),
        "{}",
        text(&out)
    );
    // The name is free again.
    let res = http(
        port,
        "POST",
        "/auth/signup",
        "Content-Type: application/json\r\n",
        r#"{"username":"eve","password":"a long password"}"#,
    )
    .expect("signup");
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let out = vestibule(dir.path())
        .args(["user", "delete", "nobody"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "{}", text(&out));
}
