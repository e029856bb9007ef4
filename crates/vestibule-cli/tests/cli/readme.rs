//! Every shell block of README.md runs against the built binary, so the README cannot drift from
//! what the binary does. `cargo run --release --` and `cargo run --` stand for the binary, which is
//! also `vestibule` on the blocks' `PATH`. Each block runs in a fresh directory holding a small SPA
//! (`src/app.js`, `dist/index.html`) and the repository's `deploy/` folder.
//!
//! A marker on the line before a block says how (docs/TESTING.md, "The README's commands"):
//! - none: each command runs and must exit 0;
//! - `<!-- readme-test: run; exit 0 or 1 … -->`: each command must exit with one of those codes;
//! - `<!-- readme-test: serve -->`: each command is a server: started on a free port (its
//!   `--listen` rewritten, or `VESTIBULE_LISTEN`), it must answer `GET /auth/me` with 401
//!   (anonymous), then it is stopped;
//! - `<!-- readme-test: skip: REASON -->`: not runnable here; the reason says where it is tested.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http};

#[derive(Debug, PartialEq)]
enum Marker {
    Run { exits: Vec<i32> },
    Serve,
    Skip(String),
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence, for messages.
    line: usize,
    marker: Marker,
    /// The commands: comments and blank lines dropped, `\` continuations joined.
    commands: Vec<String>,
}

fn marker(line: usize, text: Option<&str>) -> Marker {
    let Some(body) = text
        .and_then(|t| t.trim().strip_prefix("<!-- readme-test:"))
        .and_then(|t| t.strip_suffix("-->"))
    else {
        return Marker::Run { exits: vec![0] };
    };
    let body = body.trim();
    if let Some(reason) = body.strip_prefix("skip:") {
        let reason = reason.trim();
        assert!(
            reason.len() > 10,
            "README.md:{line}: a skipped block needs a reason"
        );
        return Marker::Skip(reason.to_owned());
    }
    if body == "serve" {
        return Marker::Serve;
    }
    if let Some(rest) = body.strip_prefix("run") {
        let spec = rest.split('(').next().unwrap_or_default();
        let exits: Vec<i32> = spec
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|d| d.parse().ok())
            .collect();
        return Marker::Run {
            exits: if exits.is_empty() { vec![0] } else { exits },
        };
    }
    panic!("README.md:{line}: unknown readme-test marker {body:?}");
}

fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim();
        let Some(lang) = fence.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or(lines.len());
        if matches!(lang.trim(), "sh" | "bash" | "shell" | "console") {
            let before = lines[..start]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .copied();
            let mut commands: Vec<String> = Vec::new();
            let mut pending = String::new();
            for l in &lines[start + 1..end] {
                let t = l.trim();
                if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
                    continue;
                }
                if let Some(head) = t.strip_suffix('\\') {
                    pending.push_str(head.trim_end());
                    pending.push(' ');
                } else {
                    pending.push_str(t);
                    commands.push(std::mem::take(&mut pending));
                }
            }
            out.push(Block {
                line: start + 1,
                marker: marker(start + 1, before),
                commands,
            });
        }
        i = end + 1;
    }
    out
}

/// `cargo run [--release] -- ARGS` is the binary.
fn as_binary(command: &str) -> String {
    command
        .replace("cargo run --release -- ", "vestibule ")
        .replace("cargo run -- ", "vestibule ")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory with a small SPA and the deploy folder; the binary on `PATH` as `vestibule`.
fn workdir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::create_dir_all(p.join("src")).expect("src");
    std::fs::write(
        p.join("src/app.js"),
        "export const me = () => fetch('http://localhost:8000/auth/me');\n",
    )
    .expect("app.js");
    std::fs::create_dir_all(p.join("dist")).expect("dist");
    std::fs::write(
        p.join("dist/index.html"),
        "<!doctype html><title>app</title>\n",
    )
    .expect("index.html");
    std::os::unix::fs::symlink(repo().join("deploy"), p.join("deploy")).expect("deploy link");
    let bin = p.join(".bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vestibule"), bin.join("vestibule"))
        .expect("bin link");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (dir, path)
}

fn shell(dir: &Path, path: &str, script: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).current_dir(dir).env("PATH", path);
    for (k, _) in std::env::vars() {
        if k.starts_with("VESTIBULE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn run(block: &Block, exits: &[i32]) {
    let (dir, path) = workdir();
    for c in &block.commands {
        let c = as_binary(c);
        let out = shell(dir.path(), &path, &c).output().expect("bash");
        let code = out.status.code().unwrap_or(-1);
        assert!(
            exits.contains(&code),
            "README.md:{}: `{c}` exited {code} (expected {exits:?})\n{}{}",
            block.line,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn serve(block: &Block) {
    for c in &block.commands {
        let (dir, path) = workdir();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut c = as_binary(c);
        let mut words: Vec<String> = c.split(' ').map(str::to_owned).collect();
        if let Some(at) = words.iter().position(|w| w == "--listen") {
            if let Some(value) = words.get_mut(at + 1) {
                *value = addr.clone();
            }
            c = words.join(" ");
        }
        let err = std::fs::File::create(dir.path().join("server.err")).expect("log");
        let mut child = shell(dir.path(), &path, &format!("exec env {c}"))
            .env("VESTIBULE_LISTEN", &addr)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(20);
        let answer = loop {
            if let Some(res) = http(port, "GET", "/auth/me", "", "") {
                break res;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("server.err")).unwrap_or_default();
                panic!(
                    "README.md:{}: `{c}` did not answer on {addr}\n{log}",
                    block.line
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "README.md:{}: `{c}`: GET /auth/me answered\n{answer}",
            block.line
        );
    }
}

#[test]
fn every_shell_block_of_the_readme_is_run_or_says_why_not() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let blocks = blocks(&readme);
    // The two newcomer commands, exactly: the demo is the first block, the test command is there.
    assert_eq!(
        blocks.first().map(|b| b.commands.clone()),
        Some(vec!["cargo run --release -- serve --demo".to_owned()]),
        "the README starts with the demo"
    );
    assert!(
        blocks
            .iter()
            .any(|b| b.commands == ["bash scripts/test.sh"]),
        "the README names the test command"
    );
    let check = Command::new("bash")
        .args(["-n", "scripts/test.sh"])
        .current_dir(repo())
        .status()
        .expect("bash -n");
    assert!(check.success(), "scripts/test.sh does not parse");

    let mut ran = 0;
    for b in &blocks {
        assert!(
            !b.commands.is_empty(),
            "README.md:{}: an empty block",
            b.line
        );
        match &b.marker {
            Marker::Skip(_) => continue,
            Marker::Serve => serve(b),
            Marker::Run { exits } => run(b, exits),
        }
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} README blocks ran");
}

#[test]
fn markers_are_read_strictly() {
    let blocks = blocks(
        "<!-- readme-test: skip: needs root; e2e/deploy.test.js runs it -->\n```sh\nsudo x \\\n  --y\n```\n\n```toml\nnot = \"shell\"\n```\n<!-- readme-test: run; exit 0 or 1 (why) -->\n```sh\n# comment\nvestibule a\n\nvestibule b\n```\n",
    );
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert!(matches!(blocks[0].marker, Marker::Skip(_)));
    assert_eq!(blocks[0].commands, ["sudo x --y"]);
    assert_eq!(blocks[1].marker, Marker::Run { exits: vec![0, 1] });
    assert_eq!(blocks[1].commands, ["vestibule a", "vestibule b"]);
    assert_eq!(
        as_binary("cargo run --release -- serve --demo"),
        "vestibule serve --demo"
    );
    let unknown = std::panic::catch_unwind(|| marker(1, Some("<!-- readme-test: maybe -->")));
    assert!(unknown.is_err(), "an unknown marker fails");
    let no_reason = std::panic::catch_unwind(|| marker(1, Some("<!-- readme-test: skip: -->")));
    assert!(no_reason.is_err(), "a skip needs a reason");
}
