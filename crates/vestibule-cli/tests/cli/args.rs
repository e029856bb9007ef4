//! One argument style: the user a command is about is positional (`user add NAME`,
//! `user reset-password NAME`, `token list NAME`, `session list NAME`); the older `--user NAME`
//! still works, hidden. Errors speak the API's language (code, message, hint), and tables show
//! dates, not Unix seconds.

use super::{run_with_stdin, text, vestibule};

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let out = vestibule(dir).args(args).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_subject_user_is_positional_and_the_old_flag_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = run_with_stdin(
        d,
        &["user", "add", "amy", "--password-stdin"],
        "a long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    ok(d, &["token", "create", "amy", "--name", "new-style"]);
    ok(
        d,
        &["token", "create", "--user", "amy", "--name", "old-style"],
    );
    for list in [
        &["token", "list", "amy"][..],
        &["token", "list", "--user", "amy"][..],
    ] {
        let l = ok(d, list);
        assert!(
            l.contains("new-style") && l.contains("old-style"),
            "{list:?}: {l}"
        );
    }
    ok(d, &["token", "revoke", "amy", "1"]);
    ok(d, &["token", "revoke", "--user", "amy", "2"]);
    let l = ok(d, &["token", "list", "amy"]);
    assert!(!l.contains("style"), "both revoked: {l}");
    ok(d, &["session", "list", "amy"]);
    ok(d, &["session", "list", "--user", "amy"]);
    let new = ok(d, &["user", "reset-password", "amy", "--valid-for", "10m"]);
    let old = ok(d, &["user", "reset-password", "--user", "amy"]);
    assert!(
        new.starts_with("vrst_") && old.starts_with("vrst_"),
        "{new}{old}"
    );
    // Both spellings at once, or neither, is a usage error; the help shows only the positional.
    for bad in [
        &["user", "reset-password", "amy", "--user", "amy"][..],
        &["user", "reset-password"][..],
        &["token", "revoke", "amy"][..],
        &["token", "revoke", "amy", "one"][..],
    ] {
        let out = vestibule(d).args(bad).output().expect("run");
        assert!(
            !out.status.success(),
            "{bad:?} was accepted: {}",
            text(&out)
        );
    }
    let help = ok(d, &["user", "reset-password", "--help"]);
    assert!(help.contains("NAME") && !help.contains("--user"), "{help}");
}

#[test]
fn cli_errors_print_the_api_code_message_and_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "amy", "--password-stdin"],
        "amy-the-great-1\n",
    );
    assert!(!out.status.success());
    let all = text(&out);
    assert!(
        all.contains("error: password_contains_username: "),
        "the API's code: {all}"
    );
    assert!(all.contains("\nhint: "), "the API's hint: {all}");
    assert!(
        !all.contains("PasswordContainsUsername"),
        "no Rust names: {all}"
    );
    let out = run_with_stdin(
        dir.path(),
        &["user", "add", "a b", "--password-stdin"],
        "a long password\n",
    );
    assert!(text(&out).contains("invalid_username: "), "{}", text(&out));
}

#[test]
fn token_list_shows_dates_like_session_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = run_with_stdin(
        d,
        &["user", "add", "amy", "--password-stdin"],
        "a long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    ok(
        d,
        &["token", "create", "amy", "--name", "ci", "--days", "30"],
    );
    let l = ok(d, &["token", "list", "amy"]);
    assert!(!l.contains("unix"), "{l}");
    let row = l
        .lines()
        .find(|r| r.contains(" ci "))
        .expect("the token's row");
    let date = row
        .split_whitespace()
        .find(|w| w.len() == 20 && w.ends_with('Z'))
        .unwrap_or_else(|| panic!("an RFC 3339 expiry in {row:?}"));
    assert!(time_ok(date), "{date}");
    assert!(row.trim_end().ends_with("never"), "last used: {row}");
}

fn time_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':'
}

#[test]
fn doctor_help_lists_only_what_the_doctor_reads_grouped_by_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let help = ok(dir.path(), &["doctor", "--help"]);
    for unused in ["--database", "--log-json"] {
        assert!(!help.contains(unused), "{unused} in doctor --help:\n{help}");
    }
    let probe = help
        .split("Probe a server (with --api only):")
        .nth(1)
        .unwrap_or_else(|| panic!("a probe section:\n{help}"));
    for flag in [
        "--username",
        "--password-stdin",
        "--resolve",
        "--cacert",
        "--then",
    ] {
        assert!(
            probe.contains(flag),
            "{flag} under the probe heading:\n{help}"
        );
    }
    assert!(help.contains("Modes: --page + --api (probe), --page + --config (offline), --scan"));
    // Still accepted, so a shared alias passing them does not break.
    let out = vestibule(dir.path())
        .args(["doctor", "--database", "x.db", "--scan", "."])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
