//! `vestibule config check` on the proxy tables: `[[upstream]]` and `[dev]` are listed, and each
//! mistake is named by its key.

use super::{text, vestibule};

fn check(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vestibule.toml"), toml).expect("write config");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    (out.status.success(), text(&out))
}

#[test]
fn config_check_lists_the_upstreams_and_the_dev_routes() {
    let (ok, t) = check(
        r#"
listen = "127.0.0.1:8080"
[[upstream]]
prefix = "/api"
url = "http://127.0.0.1:8001"
[[upstream]]
prefix = "/api/admin"
url = "http://127.0.0.1:8002/"
strip_prefix = true
identity_assertion = true
[dev]
frontend = "http://127.0.0.1:5173"
api = ["/api=http://127.0.0.1:8001"]
"#,
    );
    assert!(ok, "{t}");
    assert!(t.contains("configuration is valid"), "{t}");
    let admin = t.find(
        "/api/admin   -> http://127.0.0.1:8002 (require_auth, strip_prefix, identity_assertion)",
    );
    let api = t.find("/api         -> http://127.0.0.1:8001 (require_auth)");
    assert!(
        matches!((admin, api), (Some(a), Some(b)) if a < b),
        "longest prefix first, with policy and options:\n{t}"
    );
    assert!(
        t.contains("vestibule dev (from [dev]; listens on 127.0.0.1:3000)"),
        "{t}"
    );
    assert!(
        t.contains("/            -> http://127.0.0.1:5173 (dev.frontend)"),
        "{t}"
    );
    assert!(
        t.contains("/api         -> http://127.0.0.1:8001 (dev.api[0])"),
        "{t}"
    );
    assert!(
        !t.contains("warning: upstream"),
        "nothing to warn about:\n{t}"
    );
}

#[test]
fn config_check_says_when_nothing_is_proxied() {
    let (ok, t) = check("listen = \"127.0.0.1:8080\"\n");
    assert!(ok, "{t}");
    assert!(
        t.contains("upstreams     (none: nothing is proxied)"),
        "{t}"
    );
}

#[test]
fn config_check_names_each_upstream_problem_by_key() {
    let (ok, t) = check(
        r#"
listen = "127.0.0.1:8080"
[[upstream]]
prefix = "/api"
url = "https://backend.internal"
[[upstream]]
prefix = "/auth/extra"
url = "http://127.0.0.1:8001"
[[upstream]]
prefix = "/notes"
url = "http://127.0.0.1:8003"
[[upstream]]
prefix = "/notes"
url = "http://127.0.0.1:8004"
[[upstream]]
prefix = "/self"
url = "http://localhost:8080"
[[upstream]]
prefix = "api2"
url = "http://127.0.0.1:8005/v1"
"#,
    );
    assert!(!ok, "{t}");
    for (key, what) in [
        ("upstream[0].url", "is not http://"),
        ("upstream[1].prefix", "collides with /auth"),
        ("upstream[3].prefix", "already forwarded by upstream[2]"),
        ("upstream[4].url", "own listen address"),
        ("upstream[5].prefix", "must start with /"),
        ("upstream[5].url", "has a path or query"),
    ] {
        assert!(
            t.lines()
                .any(|l| l.contains(&format!("{key}: ")) && l.contains(what)),
            "{key} ({what}) missing from:\n{t}"
        );
    }
    assert!(
        !t.contains("  - upstream: "),
        "the duplicate is named by its key, not by the table:\n{t}"
    );
}

#[test]
fn config_check_names_dev_problems_by_key() {
    let (ok, t) = check(
        r#"
[dev]
frontend = "http://127.0.0.1:3000"
api = ["/api=http://127.0.0.1:8001", "/api=http://127.0.0.1:8002", "/auth=http://127.0.0.1:8003", "nonsense"]
"#,
    );
    assert!(!ok, "{t}");
    for (key, what) in [
        ("dev.frontend", "own listen address"),
        ("dev.api[1]", "already forwarded by dev.api[0]"),
        ("dev.api[2]", "collides with /auth"),
        ("dev.api[3]", "PREFIX=URL"),
    ] {
        assert!(
            t.lines()
                .any(|l| l.contains(&format!("{key}: ")) && l.contains(what)),
            "{key} ({what}) missing from:\n{t}"
        );
    }
}

#[test]
fn config_check_warns_about_weaker_nested_policies_and_forwarded_credentials() {
    let (ok, t) = check(
        r#"
[[upstream]]
prefix = "/api"
url = "http://127.0.0.1:8001"
[[upstream]]
prefix = "/api/public"
url = "http://127.0.0.1:8001"
policy = "anonymous_ok"
forward_session_cookie = true
[[upstream]]
prefix = "/"
url = "http://127.0.0.1:5173"
forward_authorization = true
"#,
    );
    assert!(ok, "warnings do not fail the check:\n{t}");
    for (key, what) in [
        ("upstream[1].policy", "anonymous_ok inside upstream[0] /api"),
        (
            "upstream[1].forward_session_cookie",
            "session cookie reaches",
        ),
        ("upstream[2].forward_authorization", "bearer tokens reach"),
        ("upstream[2].policy", "require_auth on \"/\""),
    ] {
        assert!(
            t.lines()
                .any(|l| l.starts_with(&format!("warning: {key}: ")) && l.contains(what)),
            "{key} ({what}) missing from:\n{t}"
        );
    }
    // A nested prefix with the same or a stricter policy is ordinary routing.
    assert!(!t.contains("warning: upstream[2].prefix"), "{t}");
}

#[test]
fn config_check_names_an_unknown_policy() {
    let (ok, t) = check(
        "[[upstream]]\nprefix = \"/api\"\nurl = \"http://127.0.0.1:8001\"\npolicy = \"public\"\n",
    );
    assert!(!ok, "{t}");
    assert!(
        t.contains("policy") && t.contains("require_auth") && t.contains("anonymous_ok"),
        "the key and the accepted values are named:\n{t}"
    );
}

/// `serve` runs the same validation as `config check`: a prefix forwarded twice or an upstream
/// that is Vestibule itself stops it at start, named by key, instead of looping at run time.
#[test]
fn serve_refuses_what_config_check_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "listen = \"127.0.0.1:8090\"\n[[upstream]]\nprefix = \"/api\"\nurl = \"http://127.0.0.1:8001\"\n\
         [[upstream]]\nprefix = \"/api\"\nurl = \"http://127.0.0.1:8002\"\n\
         [[upstream]]\nprefix = \"/self\"\nurl = \"http://localhost:8090\"\n",
    )
    .expect("write");
    let out = vestibule(dir.path()).args(["serve"]).output().expect("run");
    assert!(!out.status.success(), "serve started: {}", text(&out));
    let said = text(&out);
    assert!(said.contains("upstream[1].prefix"), "{said}");
    assert!(said.contains("already forwarded by upstream[0]"), "{said}");
    assert!(said.contains("upstream[2].url"), "{said}");
    assert!(said.contains("own listen address"), "{said}");
}
