//! `vestibule init LAYOUT`: each layout's file is accepted by `config check` as written (after
//! the one step its "next" line names, building the SPA into dist/), and an existing file is never
//! overwritten without --force.

use super::{text, vestibule};

const LAYOUTS: [&str; 3] = ["dev-proxy", "subdomains", "gateway"];

fn init(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    vestibule(dir)
        .arg("init")
        .args(args)
        .output()
        .expect("run init")
}

fn check(dir: &std::path::Path, profile: Option<&str>) -> std::process::Output {
    let mut cmd = vestibule(dir);
    cmd.args(["config", "check"]);
    if let Some(p) = profile {
        cmd.args(["--profile", p]);
    }
    cmd.output().expect("run config check")
}

#[test]
fn every_layout_writes_a_commented_file_that_config_check_accepts() {
    for layout in LAYOUTS {
        let dir = tempfile::tempdir().expect("tempdir");
        // The gateway layout's next step: the SPA built into dist/.
        std::fs::create_dir(dir.path().join("dist")).expect("dist");
        std::fs::write(dir.path().join("dist/index.html"), "<!doctype html>").expect("index");
        let out = init(dir.path(), &[layout]);
        assert!(out.status.success(), "{layout}: {}", text(&out));
        assert!(text(&out).contains("next: "), "{layout}: {}", text(&out));
        let written = std::fs::read_to_string(dir.path().join("vestibule.toml")).expect("file");
        assert!(
            written.starts_with(&format!("# vestibule.toml — layout \"{layout}\"")),
            "{written}"
        );
        let comments = written.lines().filter(|l| l.trim_start().starts_with('#'));
        assert!(comments.count() >= 5, "{layout}: the file explains itself");
        let out = check(dir.path(), None);
        assert!(out.status.success(), "{layout}: {}", text(&out));
        assert!(
            text(&out).contains("configuration is valid"),
            "{}",
            text(&out)
        );
        if layout == "subdomains" {
            let out = check(dir.path(), Some("dev"));
            assert!(
                out.status.success(),
                "{layout} --profile dev: {}",
                text(&out)
            );
            assert!(
                text(&out).contains("http://localhost:8000"),
                "{}",
                text(&out)
            );
        }
    }
}

#[test]
fn init_never_overwrites_without_force_and_writes_where_config_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vestibule.toml"), "# mine\n").expect("write");
    let out = init(dir.path(), &["gateway"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    let kept = std::fs::read_to_string(dir.path().join("vestibule.toml")).expect("read");
    assert_eq!(kept, "# mine\n", "nothing was written");

    let out = init(dir.path(), &["gateway", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let replaced = std::fs::read_to_string(dir.path().join("vestibule.toml")).expect("read");
    assert!(replaced.contains("[[upstream]]"), "{replaced}");

    let out = init(dir.path(), &["dev-proxy", "--config", "other.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("other.toml").exists());

    let out = init(dir.path(), &["monolith"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("dev-proxy"),
        "the layouts are listed: {}",
        text(&out)
    );
}
