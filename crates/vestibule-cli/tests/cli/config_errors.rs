//! Configuration errors as `config check` and `serve` print them: every unknown key and type
//! error of the file at once, each with its line and the nearest known key, in the format of the
//! value checks; `VESTIBULE_*` variables that are not keys warn instead of stopping start-up.

use super::{text, vestibule};

const TYPOS: &str = "listen = \"127.0.0.1:8000\"\nspa_orgins = [\"http://localhost:3000\"]\n\n[auth]\nsignup = \"yes\"\n\n[session]\nidle_timout = \"1d\"\n";

#[test]
fn config_check_reports_every_typo_and_type_error_with_line_and_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vestibule.toml"), TYPOS).expect("write");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("configuration has 3 problem(s):"), "{t}");
    for line in [
        "  - spa_orgins: unknown key (vestibule.toml:2); did you mean spa_origins?",
        "  - auth.signup: invalid type: string \"yes\", expected a boolean (vestibule.toml:5)",
        "  - session.idle_timout: unknown key (vestibule.toml:8); did you mean idle_timeout?",
    ] {
        assert!(t.contains(line), "{line:?} missing from:\n{t}");
    }
    assert!(!t.contains("default."), "no internal profile prefix: {t}");
}

#[test]
fn serve_refuses_the_same_typos_the_same_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vestibule.toml"), TYPOS).expect("write");
    let out = vestibule(dir.path()).arg("serve").output().expect("run");
    assert!(!out.status.success(), "serve started: {}", text(&out));
    let t = text(&out);
    assert!(t.contains("did you mean spa_origins?"), "{t}");
    assert!(t.contains("did you mean idle_timeout?"), "{t}");
    assert!(t.contains("auth.signup"), "{t}");
}

#[test]
fn a_stray_environment_variable_warns_and_a_key_variable_still_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .env("VESTIBULE_REQUIRE_SERVICES", "1")
        .env("VESTIBULE_SESSION__IDLE_TIMOUT", "1d")
        .env("VESTIBULE_LISTEN", "127.0.0.1:8123")
        .output()
        .expect("run");
    let t = text(&out);
    assert!(
        out.status.success(),
        "a stray variable must not refuse: {t}"
    );
    assert!(
        t.contains("warning: VESTIBULE_REQUIRE_SERVICES is not a configuration key and is ignored"),
        "{t}"
    );
    assert!(
        t.contains("VESTIBULE_SESSION__IDLE_TIMOUT is not a configuration key and is ignored; did you mean VESTIBULE_SESSION__IDLE_TIMEOUT?"),
        "{t}"
    );
    assert!(
        t.contains("127.0.0.1:8123"),
        "VESTIBULE_LISTEN applies: {t}"
    );
}

#[test]
fn the_file_stays_strict_and_a_variable_of_the_wrong_type_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "require_services = true\n",
    )
    .expect("write");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("require_services: unknown key (vestibule.toml:1)"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(dir.path().join("vestibule.toml")).expect("rm");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .env("VESTIBULE_AUTH__SIGNUP", "maybe")
        .output()
        .expect("run");
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("  - auth.signup: "), "{t}");
    assert!(t.contains("VESTIBULE_AUTH__SIGNUP"), "{t}");
}

#[test]
fn config_schema_prints_the_json_schema_of_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["config", "schema"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(schema["title"], "vestibule.toml");
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["properties"]["spa_origins"]["description"].is_string());
    assert!(schema["$defs"]["RawSession"]["properties"]["idle_timeout"].is_object());
}

#[test]
fn config_check_without_a_file_says_it_checked_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vestibule(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("no vestibule.toml here and no --config: checking the defaults"),
        "{t}"
    );
    std::fs::write(dir.path().join("vestibule.toml"), "").expect("write");
    let t = text(
        &vestibule(dir.path())
            .args(["config", "check"])
            .output()
            .expect("run"),
    );
    assert!(!t.contains("checking the defaults"), "{t}");
}
