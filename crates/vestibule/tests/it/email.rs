//! Email against a real SMTP server on loopback (aiosmtpd, `smtp_sink.py`, installed into a venv
//! by scripts/test.sh; its python is `VESTIBULE_TEST_SMTP_PYTHON`, else
//! `target/aiosmtpd-venv/bin/python`): what the server receives (headers, links), recovery links
//! that work once and die when a newer one is asked for, the same answer for an unknown
//! account, verification and `auth.require_verified_email`, and the outbox across faults (SMTP
//! down and back, on SQLite and with two instances on PostgreSQL; one recipient refused).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::services::{free_port, spawn_on_postgres, unavailable};
use crate::support::{TestApp, assert_error};

/// The aiosmtpd process, stoppable and restartable on its port.
pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    python: PathBuf,
    child: Option<std::process::Child>,
}

fn sink_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("VESTIBULE_TEST_SMTP_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/aiosmtpd-venv/bin/python");
    p.exists().then_some(p)
}

impl SmtpSink {
    /// Started on a free port; `None` (after the skip message) without aiosmtpd.
    pub async fn start() -> Option<Self> {
        let Some(python) = sink_python() else {
            unavailable(
                "aiosmtpd",
                "VESTIBULE_TEST_SMTP_PYTHON",
                "no python with aiosmtpd (scripts/test.sh installs it into target/aiosmtpd-venv)",
            );
            return None;
        };
        let mut s = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("dir"),
            python,
            child: None,
        };
        s.launch().await;
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, on the same port) and waits until it accepts connections.
    pub async fn launch(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_sink.py");
        let child = std::process::Command::new(&self.python)
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("smtp_sink.py starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the SMTP sink did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process: the port refuses connections until [`launch`](Self::launch).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
            })
            .collect()
    }

    /// Waits until `n` messages arrived (at most `secs`), and returns them.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The email settings of these tests: the sink, quick retries.
fn email_config(raw: &mut vestibule::config::RawConfig, smtp: &str) {
    raw.email.smtp_url = Some(vestibule::config::SecretString(smtp.to_owned()));
    raw.email.from = "Acme <noreply@acme.test>".into();
    raw.email.link_base = Some("https://www.acme.test".into());
    raw.email.product_name = "Acme".into();
    raw.email.retry_initial = "1s".into();
    raw.email.retry_max = "2s".into();
    raw.email.poll_interval = "1s".into();
    raw.email.send_timeout = "3s".into();
}

/// The token of the first `{link_base}{path}?token=` link of a message's text (`vrst_…`,
/// `vevf_…`: base62 after the prefix's underscore).
fn token_in(message: &Value, path: &str) -> String {
    let text = message["text"].as_str().expect("text part");
    let marker = format!("https://www.acme.test{path}?token=");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in {text}"))
        + marker.len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

async fn signup_with_email(app: &TestApp, username: &str, email: &str) -> reqwest::Response {
    app.post_anon(
        "/auth/signup",
        &json!({"username": username, "password": "correct horse battery", "email": email}),
    )
    .await
}

fn of_kind<'a>(messages: &'a [Value], to: &str, subject_has: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| {
            m["rcpt_tos"][0] == to
                && m["headers"]["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains(subject_has))
        })
        .collect()
}

#[tokio::test]
async fn recovery_over_real_smtp_link_works_once_and_an_older_link_is_dead() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    let res = signup_with_email(&app, "alice", "Alice@Example.test").await;
    assert_eq!(res.status(), 201);
    // The verification message.
    let got = sink.wait_for(1, 10).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let verify = &got[0];
    assert_eq!(verify["rcpt_tos"], json!(["Alice@Example.test"]));
    assert_eq!(verify["headers"]["from"], "Acme <noreply@acme.test>");
    assert!(
        verify["headers"]["subject"]
            .as_str()
            .expect("subject")
            .contains("Acme")
    );
    assert!(
        verify["headers"]["content-type"]
            .as_str()
            .expect("ct")
            .starts_with("multipart/alternative")
    );
    assert!(
        verify["html"]
            .as_str()
            .expect("html part")
            .contains("https://www.acme.test/verify?token=vevf_")
    );

    // Two requests: only the newer link works, once. Asked for by address, in another case.
    for _ in 0..2 {
        let res = app
            .post_anon(
                "/auth/password/forgot",
                &json!({"login": "alice@EXAMPLE.test"}),
            )
            .await;
        assert_eq!(res.status(), 202);
        // One at a time, so the two messages arrive in order.
        let n = sink.messages().len() + 1;
        let got = sink.wait_for(n, 10).await;
        assert_eq!(got.len(), n);
    }
    let got = sink.messages();
    let resets = of_kind(&got, "Alice@Example.test", "Reset");
    assert_eq!(resets.len(), 2, "{got:?}");
    let older = token_in(resets[0], "/reset");
    let newer = token_in(resets[1], "/reset");
    assert!(older.starts_with("vrst_") && newer.starts_with("vrst_") && older != newer);
    // A second client logged in: the reset ends every session.
    let mut other = app.client();
    assert_eq!(
        other.login("alice", "correct horse battery").await.status(),
        200
    );

    let reset = |token: String| {
        let app = &app;
        async move {
            app.post_anon(
                "/auth/password/reset",
                &json!({"token": token, "new_password": "new staple battery horse"}),
            )
            .await
        }
    };
    assert_error(reset(older.clone()).await, 400, "reset_token_invalid").await;
    assert_eq!(reset(newer.clone()).await.status(), 204);
    assert_error(reset(newer).await, 400, "reset_token_invalid").await;
    assert_eq!(
        other.get("/auth/me").await.status(),
        401,
        "the reset ended the other session"
    );
    // Logs in with the address and the new password; the old one is refused.
    let mut c = app.client();
    assert_eq!(
        c.login("ALICE@example.test", "correct horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(
        c.login("ALICE@example.test", "new staple battery horse")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_password_change_voids_a_recovery_link_in_flight() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    assert_eq!(
        signup_with_email(&app, "bob", "bob@example.test")
            .await
            .status(),
        201
    );
    sink.wait_for(1, 10).await;
    let res = app
        .post_anon("/auth/password/forgot", &json!({"login": "bob"}))
        .await;
    assert_eq!(res.status(), 202);
    let got = sink.wait_for(2, 10).await;
    let token = token_in(of_kind(&got, "bob@example.test", "Reset")[0], "/reset");
    let mut c = app.client();
    c.login_ok("bob", "correct horse battery").await;
    let res = c
        .post_json("/auth/password", &json!({"current_password": "correct horse battery", "new_password": "another fine passphrase"}))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post_anon(
            "/auth/password/reset",
            &json!({"token": token, "new_password": "new staple battery horse"}),
        )
        .await;
    assert_error(res, 400, "reset_token_invalid").await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// Multi-threaded, as the server binary runs: on one thread the test client, the server and the
// background task would share a single CPU by construction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_answers_the_same_whether_or_not_the_account_exists() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    assert_eq!(
        signup_with_email(&app, "carol", "carol@example.test")
            .await
            .status(),
        201
    );
    let http = reqwest::Client::new();
    let ask = |login: &'static str| {
        let http = http.clone();
        let url = app.url("/auth/password/forgot");
        async move {
            let start = Instant::now();
            let res = http
                .post(url)
                .json(&json!({"login": login}))
                .send()
                .await
                .expect("send");
            let status = res.status();
            let body = res.bytes().await.expect("body");
            (start.elapsed(), status, body)
        }
    };
    let (_, s1, b1) = ask("carol@example.test").await;
    let (_, s2, b2) = ask("nobody@example.test").await;
    assert_eq!((s1, &b1), (s2, &b2), "same status and body");
    assert_eq!(s1, 202);
    // Timing: interleaved samples; the medians agree within 5 %. (Up to three rounds: one
    // round's medians can differ by noise on a shared machine; a real difference — a lookup
    // or a write before the answer — shows in every round.)
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..30 {
            // Alternating which goes first, and letting the background task finish.
            let (a, b) = if i % 2 == 0 {
                let a = ask("carol").await.0;
                tokio::time::sleep(Duration::from_millis(30)).await;
                (a, ask("nobody-here").await.0)
            } else {
                let b = ask("nobody-here").await.0;
                tokio::time::sleep(Duration::from_millis(30)).await;
                (ask("carol").await.0, b)
            };
            known.push(a);
            unknown.push(b);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let (k, u) = (median(known), median(unknown));
        let diff = k.abs_diff(u).as_secs_f64() / k.max(u).as_secs_f64();
        rounds.push((k, u, diff));
        if diff <= 0.05 {
            break;
        }
    }
    let last = rounds.last().expect("a round");
    assert!(
        last.2 <= 0.05,
        "medians differ by more than 5 %: {rounds:?}"
    );
    eprintln!("forgot timing (known, unknown, relative difference): {rounds:?}");
    // The known account did get its messages (so the work really happened, after the answer).
    let got = sink.wait_for(2, 10).await;
    assert!(!of_kind(&got, "carol@example.test", "Reset").is_empty());
}

#[tokio::test]
async fn require_verified_email_refuses_login_until_the_link_is_followed() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| {
        email_config(raw, &sink.url());
        raw.auth.require_verified_email = true;
    })
    .await;
    assert_error(
        app.post_anon(
            "/auth/signup",
            &json!({"username": "dave", "password": "correct horse battery"}),
        )
        .await,
        422,
        "email_required",
    )
    .await;
    let res = signup_with_email(&app, "dave", "dave@example.test").await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["email_verification_required"], true);
    let mut c = app.client();
    assert_error(
        c.login("dave", "correct horse battery").await,
        403,
        "email_unverified",
    )
    .await;
    // A wrong password says nothing about verification.
    assert_error(
        c.login("dave", "wrong password here").await,
        401,
        "invalid_credentials",
    )
    .await;
    // Resend: a newer link; the first one dies.
    let got = sink.wait_for(1, 10).await;
    let first = token_in(&got[0], "/verify");
    assert_eq!(
        app.post_anon("/auth/email/verify/resend", &json!({"login": "dave"}))
            .await
            .status(),
        202
    );
    let got = sink.wait_for(2, 10).await;
    assert_eq!(got.len(), 2);
    let second = token_in(&got[1], "/verify");
    assert_error(
        app.post_anon("/auth/email/verify", &json!({"token": first}))
            .await,
        400,
        "verification_token_invalid",
    )
    .await;
    let res = app
        .post_anon("/auth/email/verify", &json!({"token": second}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json")["email"],
        "dave@example.test"
    );
    assert_error(
        app.post_anon("/auth/email/verify", &json!({"token": second}))
            .await,
        400,
        "verification_token_invalid",
    )
    .await;
    assert_error(
        app.post_anon("/auth/email/verify", &json!({"token": "vevf_nonsense"}))
            .await,
        400,
        "verification_token_invalid",
    )
    .await;
    assert_eq!(c.login("dave", "correct horse battery").await.status(), 200);
}

#[tokio::test]
async fn addresses_are_unique_case_insensitively_and_validated() {
    let app = TestApp::spawn().await;
    assert_eq!(
        signup_with_email(&app, "erin", "erin@example.test")
            .await
            .status(),
        201
    );
    assert_error(
        signup_with_email(&app, "erin2", "ERIN@example.test").await,
        409,
        "email_taken",
    )
    .await;
    assert_error(
        signup_with_email(&app, "erin", "other@example.test").await,
        409,
        "username_taken",
    )
    .await;
    assert_error(
        signup_with_email(&app, "erin3", "not an address").await,
        422,
        "invalid_email",
    )
    .await;
    assert_error(
        signup_with_email(&app, "erin4", "ü@example.test").await,
        422,
        "invalid_email",
    )
    .await;
    // Another account's address never logs in with this one's password.
    assert_eq!(
        signup_with_email(&app, "frank", "frank@example.test")
            .await
            .status(),
        201
    );
    let mut c = app.client();
    assert_eq!(
        c.login("erin@example.test", "correct horse battery")
            .await
            .status(),
        200
    );
    let mut c = app.client();
    assert_error(
        c.login("nobody@example.test", "correct horse battery")
            .await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn smtp_down_when_asked_then_delivered_once_when_it_is_back() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    assert_eq!(
        signup_with_email(&app, "gina", "gina@example.test")
            .await
            .status(),
        201
    );
    sink.wait_for(1, 10).await;
    sink.stop();
    assert_eq!(
        app.post_anon("/auth/password/forgot", &json!({"login": "gina"}))
            .await
            .status(),
        202
    );
    // Tried, failed, kept with its error; the server stays ready.
    let outbox = vestibule::email::Outbox::new(app.state.db.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = outbox.list().await.expect("list");
        let reset = rows.iter().find(|r| r.kind == "password_reset");
        if reset.is_some_and(|r| r.last_error.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt recorded: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.raw_client()
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    let metrics = app
        .raw_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("vestibule_email_failures_total{reason=\"retry\"}"),
        "{metrics}"
    );
    sink.launch().await;
    let got = sink.wait_for(2, 15).await;
    assert_eq!(
        of_kind(&got, "gina@example.test", "Reset").len(),
        1,
        "{got:?}"
    );
    // And not again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.messages().len(), 2);
    let rows = outbox.list().await.expect("list");
    assert!(rows.iter().all(|r| r.sent_at.is_some()), "{rows:?}");
}

#[tokio::test]
async fn a_refused_recipient_does_not_hold_up_the_others() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    assert_eq!(
        signup_with_email(&app, "hank", "refuse-me@example.test")
            .await
            .status(),
        201
    );
    assert_eq!(
        signup_with_email(&app, "ivy", "ivy@example.test")
            .await
            .status(),
        201
    );
    let got = sink.wait_for(1, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["rcpt_tos"], json!(["ivy@example.test"]));
    let outbox = vestibule::email::Outbox::new(app.state.db.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = outbox.list().await.expect("list");
        let refused = rows
            .iter()
            .find(|r| r.recipient == "refuse-me@example.test")
            .expect("row");
        if refused.failed_at.is_some() {
            assert!(
                refused
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("550")),
                "{refused:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused message was not given up: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_instances_on_postgres_send_each_message_once_across_an_outage() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    sink.stop();
    let url = sink.url();
    let Some((a, schema)) = spawn_on_postgres(|raw| email_config(raw, &url)).await else {
        return;
    };
    let pg = schema.url.clone();
    let b = TestApp::spawn_with(|raw| {
        raw.database_url = pg;
        raw.session.store = vestibule::config::RawStore::One("database".into());
        email_config(raw, &url);
    })
    .await;
    // Five accounts, half signed up on each instance; then a recovery each, asked on the other.
    let names = ["p1", "p2", "p3", "p4", "p5"];
    for (i, n) in names.iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            signup_with_email(app, n, &format!("{n}@example.test"))
                .await
                .status(),
            201
        );
    }
    for (i, n) in names.iter().enumerate() {
        let app = if i % 2 == 0 { &b } else { &a };
        assert_eq!(
            app.post_anon("/auth/password/forgot", &json!({"login": n}))
                .await
                .status(),
            202
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sink.messages().is_empty());
    sink.launch().await;
    let got = sink.wait_for(10, 20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_after = sink.messages();
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(got_after.len(), 10, "nothing sent twice");
    for n in names {
        let to = format!("{n}@example.test");
        assert_eq!(of_kind(&got_after, &to, "Verify").len(), 1, "{to}");
        assert_eq!(of_kind(&got_after, &to, "Reset").len(), 1, "{to}");
    }
    // The links work on PostgreSQL too, on either instance: p1 verifies its address through b
    // (it signed up on a), p2 resets its password through b (it asked on a) and logs in on a.
    let verify = token_in(
        of_kind(&got_after, "p1@example.test", "Verify")[0],
        "/verify",
    );
    let res = b
        .post_anon("/auth/email/verify", &json!({"token": verify}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json")["email"],
        "p1@example.test"
    );
    let reset = token_in(of_kind(&got_after, "p2@example.test", "Reset")[0], "/reset");
    let res = b
        .post_anon(
            "/auth/password/reset",
            &json!({"token": reset, "new_password": "new staple battery horse"}),
        )
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        a.client()
            .login("p2", "correct horse battery")
            .await
            .status(),
        401
    );
    assert_eq!(
        a.client()
            .login("p2@example.test", "new staple battery horse")
            .await
            .status(),
        200
    );
    drop(b);
    drop(a);
}

#[tokio::test]
async fn security_notices_reach_a_verified_address_and_can_be_turned_off() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    assert_eq!(
        signup_with_email(&app, "jane", "jane@example.test")
            .await
            .status(),
        201
    );
    let got = sink.wait_for(1, 10).await;
    let token = token_in(&got[0], "/verify");
    assert_eq!(
        app.post_anon("/auth/email/verify", &json!({"token": token}))
            .await
            .status(),
        200
    );
    // A login from a browser that never signed in: a notice; the same browser again: none.
    let mut c = app.client();
    c.login_ok("jane", "correct horse battery").await;
    let got = sink.wait_for(2, 10).await;
    let new_device = of_kind(&got, "jane@example.test", "New sign-in");
    assert_eq!(new_device.len(), 1, "{got:?}");
    assert!(
        new_device[0]["text"]
            .as_str()
            .expect("text")
            .contains("127.0.0.1")
    );
    c.login_ok("jane", "correct horse battery").await;
    // A password change: a notice.
    let res = c
        .post_json("/auth/password", &json!({"current_password": "correct horse battery", "new_password": "another fine passphrase"}))
        .await;
    assert_eq!(res.status(), 200);
    let got = sink.wait_for(3, 10).await;
    assert_eq!(
        of_kind(&got, "jane@example.test", "password was changed").len(),
        1,
        "{got:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.messages().len(),
        3,
        "the second login from the same browser sent nothing"
    );

    // Turned off: nothing.
    let Some(quiet_sink) = SmtpSink::start().await else {
        return;
    };
    let quiet = TestApp::spawn_with(|raw| {
        email_config(raw, &quiet_sink.url());
        raw.email.notify.new_device = false;
        raw.email.notify.password_changed = false;
    })
    .await;
    assert_eq!(
        signup_with_email(&quiet, "kim", "kim@example.test")
            .await
            .status(),
        201
    );
    let got = quiet_sink.wait_for(1, 10).await;
    let token = token_in(&got[0], "/verify");
    assert_eq!(
        quiet
            .post_anon("/auth/email/verify", &json!({"token": token}))
            .await
            .status(),
        200
    );
    let mut c = quiet.client();
    c.login_ok("kim", "correct horse battery").await;
    let res = c
        .post_json("/auth/password", &json!({"current_password": "correct horse battery", "new_password": "another fine passphrase"}))
        .await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        quiet_sink.messages().len(),
        1,
        "only the verification message"
    );
}

#[tokio::test]
async fn a_message_written_before_a_restart_is_sent_once_after_it() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    sink.stop();
    let url = sink.url();
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("dir"));
    let app = TestApp::spawn_in(dir.clone(), |raw| email_config(raw, &url)).await;
    assert_eq!(
        signup_with_email(&app, "leo", "leo@example.test")
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post_anon("/auth/password/forgot", &json!({"login": "leo"}))
            .await
            .status(),
        202
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    sink.launch().await;
    let app = TestApp::spawn_in(dir, |raw| email_config(raw, &url)).await;
    let got = sink.wait_for(2, 15).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 2, "{got:?}");
    assert_eq!(of_kind(&got, "leo@example.test", "Verify").len(), 1);
    assert_eq!(of_kind(&got, "leo@example.test", "Reset").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_message_is_given_up_after_email_give_up_after() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    sink.stop();
    let url = sink.url();
    let app = TestApp::spawn_with(|raw| {
        email_config(raw, &url);
        raw.email.give_up_after = "2s".into();
    })
    .await;
    assert_eq!(
        signup_with_email(&app, "mia", "mia@example.test")
            .await
            .status(),
        201
    );
    let outbox = vestibule::email::Outbox::new(app.state.db.clone());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = outbox.list().await.expect("list");
        if rows[0].failed_at.is_some() {
            assert!(rows[0].attempts >= 2, "retried before giving up: {rows:?}");
            assert!(rows[0].last_error.is_some(), "{rows:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never given up: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back up: a given-up message stays given up.
    sink.launch().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sink.messages().is_empty());
    let metrics = app
        .raw_client()
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("vestibule_email_failures_total{reason=\"gave_up\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vestibule_email_outbox_pending 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_address_change_takes_effect_when_verified_and_the_old_address_is_told() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "noor", "password": "correct horse battery", "email": "noor@example.test"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    c.refresh_csrf().await;
    let got = sink.wait_for(1, 10).await;
    let token = token_in(&got[0], "/verify");
    assert_eq!(
        app.post_anon("/auth/email/verify", &json!({"token": token}))
            .await
            .status(),
        200
    );
    assert_eq!(
        signup_with_email(&app, "omar", "omar@example.test")
            .await
            .status(),
        201
    );
    sink.wait_for(2, 10).await;
    // Someone else's address: refused.
    assert_error(
        c.post_json("/auth/email", &json!({"email": "OMAR@example.test"}))
            .await,
        409,
        "email_taken",
    )
    .await;
    assert_error(
        c.post_json("/auth/email", &json!({"email": "nope"})).await,
        422,
        "invalid_email",
    )
    .await;
    // Without a recent password: refused.
    app.age_auth("noor", 3600).await;
    assert_error(
        c.post_json("/auth/email", &json!({"email": "noor@new.test"}))
            .await,
        403,
        "reauth_required",
    )
    .await;
    let res = c
        .post_json(
            "/auth/reauth",
            &json!({"password": "correct horse battery"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = c
        .post_json("/auth/email", &json!({"email": "noor@new.test"}))
        .await;
    assert_eq!(res.status(), 202);
    let got = sink.wait_for(3, 10).await;
    let link = of_kind(&got, "noor@new.test", "Verify");
    assert_eq!(link.len(), 1, "{got:?}");
    // Not yet: the new address does not log in, the old one still does.
    let mut d = app.client();
    assert_eq!(
        d.login("noor@new.test", "correct horse battery")
            .await
            .status(),
        401
    );
    let mut d = app.client();
    assert_eq!(
        d.login("noor@example.test", "correct horse battery")
            .await
            .status(),
        200
    );
    let res = app
        .post_anon(
            "/auth/email/verify",
            &json!({"token": token_in(link[0], "/verify")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let got = sink.wait_for(5, 10).await;
    let notice = of_kind(&got, "noor@example.test", "address was changed");
    assert_eq!(notice.len(), 1, "{got:?}");
    assert!(
        notice[0]["text"]
            .as_str()
            .expect("text")
            .contains("noor@new.test")
    );
    let mut d = app.client();
    assert_eq!(
        d.login("noor@new.test", "correct horse battery")
            .await
            .status(),
        200
    );
    let mut d = app.client();
    assert_eq!(
        d.login("noor@example.test", "correct horse battery")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn a_recovery_on_an_account_with_a_second_factor_needs_it_too() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "pia", "password": "correct horse battery", "email": "pia@example.test"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    c.refresh_csrf().await;
    let (_secret, recovery) = crate::mfa::enrol(&mut c).await;
    assert_eq!(
        app.post_anon("/auth/password/forgot", &json!({"login": "pia"}))
            .await
            .status(),
        202
    );
    let got = sink.wait_for(2, 10).await;
    let token = token_in(of_kind(&got, "pia@example.test", "Reset")[0], "/reset");
    let reset = |extra: Value| {
        let mut body = json!({"token": token, "new_password": "new staple battery horse"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let app = &app;
        async move { app.post_anon("/auth/password/reset", &body).await }
    };
    // The link alone does not set the password; a wrong factor neither; the token survives both.
    assert_error(reset(json!({})).await, 401, "second_factor_required").await;
    assert_error(
        reset(json!({"code": "000000"})).await,
        401,
        "mfa_code_invalid",
    )
    .await;
    assert_error(
        reset(json!({"recovery_code": "not-a-code"})).await,
        401,
        "mfa_code_invalid",
    )
    .await;
    let mut d = app.client();
    assert_eq!(
        d.login("pia", "correct horse battery").await.status(),
        200,
        "the old password still works"
    );
    assert_eq!(
        reset(json!({"recovery_code": recovery[0]})).await.status(),
        204
    );
    let mut d = app.client();
    assert_eq!(
        d.login("pia", "new staple battery horse").await.status(),
        200
    );
}

/// Runs `sql` on the SQLite database of `app` from a connection of its own.
async fn sqlite_exec(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    let path = app.dir.path().join("vestibule.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .expect("sql");
    c.close().await.expect("close");
}

/// The outbox rows of `kind` to `to`, read straight from the table.
async fn outbox_rows(app: &TestApp, kind: &str, to: &str) -> usize {
    vestibule::email::Outbox::new(app.state.db.clone())
        .list()
        .await
        .expect("list")
        .iter()
        .filter(|r| r.kind == kind && r.recipient == to)
        .count()
}

/// Signs `name` up with `name@example.test` on `c` (logged in) and follows the link the sink
/// received, so the address is verified. `seen` is how many messages the sink had before.
async fn verified_account(
    app: &TestApp,
    sink: &SmtpSink,
    c: &mut crate::support::TestClient,
    name: &str,
) -> String {
    let email = format!("{name}@example.test");
    let seen = sink.messages().len();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": name, "password": "correct horse battery", "email": email}),
        )
        .await;
    assert_eq!(res.status(), 201);
    c.refresh_csrf().await;
    let got = sink.wait_for(seen + 1, 10).await;
    let link = of_kind(&got, &email, "Verify");
    assert_eq!(link.len(), 1, "{got:?}");
    let res = app
        .post_anon(
            "/auth/email/verify",
            &json!({"token": token_in(link[0], "/verify")}),
        )
        .await;
    assert_eq!(res.status(), 200);
    email
}

/// A security notice is written by the transaction of its change: when the outbox refuses the
/// row, the change does not happen either (on the old code the password changed and the notice
/// was lost); when the change commits, its row is in the outbox as soon as the answer is back.
#[tokio::test]
async fn a_security_notice_commits_with_its_change_or_not_at_all() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    let mut c = app.client();
    let email = verified_account(&app, &sink, &mut c, "quinn").await;
    let change = |from: &'static str, to: &'static str| json!({"current_password": from, "new_password": to});

    // The outbox refuses every row: the password change fails as a whole.
    sqlite_exec(
        &app,
        "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox \
         BEGIN SELECT RAISE(ABORT, 'outbox refused'); END",
    )
    .await;
    let res = c
        .post_json(
            "/auth/password",
            &change("correct horse battery", "another fine passphrase"),
        )
        .await;
    assert_error(res, 503, "store_unavailable").await;
    let mut d = app.client();
    assert_eq!(
        d.login("quinn", "another fine passphrase").await.status(),
        401,
        "the change rolled back with its notice"
    );
    assert_eq!(outbox_rows(&app, "password_changed", &email).await, 0);
    // TOTP: the confirmation rolls back too, so the factor is not on.
    let res = c.post_json("/auth/mfa/totp/enroll", &json!({})).await;
    assert_eq!(res.status(), 200);
    let e: Value = res.json().await.expect("json");
    let secret = crate::mfa::base32_decode(e["secret"].as_str().expect("secret"));
    let res = c
        .post_json(
            "/auth/mfa/totp/confirm",
            &json!({"code": crate::mfa::code(&secret, 0)}),
        )
        .await;
    assert_error(res, 503, "store_unavailable").await;
    let me: Value = c.get("/auth/mfa").await.json().await.expect("json");
    assert_eq!(me["totp"], json!(false), "{me}");

    // The outbox takes rows again: each committed change has its row when the answer is back.
    sqlite_exec(&app, "DROP TRIGGER refuse_outbox").await;
    let res = c
        .post_json(
            "/auth/password",
            &change("correct horse battery", "another fine passphrase"),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(outbox_rows(&app, "password_changed", &email).await, 1);
    // The change moved the session to a new token (and CSRF token).
    c.refresh_csrf().await;
    let res = c
        .post_json(
            "/auth/mfa/totp/confirm",
            &json!({"code": crate::mfa::code(&secret, 0)}),
        )
        .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    assert_eq!(outbox_rows(&app, "second_factor", &email).await, 1);
    // The confirmation proved the factor: this session may remove it.
    assert_eq!(c.delete("/auth/mfa/totp").await.status(), 204);
    assert_eq!(outbox_rows(&app, "second_factor", &email).await, 2);
    // And the worker delivers them: the verification link, then the three notices.
    let got = sink.wait_for(4, 10).await;
    assert_eq!(
        of_kind(&got, &email, "password was changed").len(),
        1,
        "{got:?}"
    );
    assert_eq!(of_kind(&got, &email, "second factor").len(), 2, "{got:?}");
}

/// Where recovery goes (docs/SECURITY.md): a verified address; the never-verified signup
/// address only when verification is not required and no change of address is pending; never
/// the pending new address.
#[tokio::test]
async fn recovery_goes_only_to_an_address_the_policy_allows() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    let forgot = |login: &'static str| {
        let app = &app;
        async move {
            let res = app
                .post_anon("/auth/password/forgot", &json!({"login": login}))
                .await;
            assert_eq!(res.status(), 202);
        }
    };
    // Sam: an unverified signup address, then a change to another address asked for.
    let mut sam = app.client();
    let res = sam
        .post_json(
            "/auth/signup",
            &json!({"username": "sam", "password": "correct horse battery", "email": "sam@example.test"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    sam.refresh_csrf().await;
    sink.wait_for(1, 10).await;
    // Untouched and never verified: the signup address is the only way in, and gets the link.
    forgot("sam").await;
    let got = sink.wait_for(2, 10).await;
    assert_eq!(
        of_kind(&got, "sam@example.test", "Reset").len(),
        1,
        "{got:?}"
    );
    let res = sam
        .post_json("/auth/email", &json!({"email": "sam@new.test"}))
        .await;
    assert_eq!(res.status(), 202);
    sink.wait_for(3, 10).await;
    // Tia: verified, then a change asked for.
    let mut tia = app.client();
    verified_account(&app, &sink, &mut tia, "tia").await;
    let res = tia
        .post_json("/auth/email", &json!({"email": "tia@new.test"}))
        .await;
    assert_eq!(res.status(), 202);
    sink.wait_for(5, 10).await;

    forgot("sam").await;
    forgot("tia").await;
    forgot("sam@new.test").await;
    let got = sink.wait_for(6, 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = if sink.messages().len() > got.len() {
        sink.messages()
    } else {
        got
    };
    assert_eq!(
        of_kind(&got, "tia@example.test", "Reset").len(),
        1,
        "the verified address gets it: {got:?}"
    );
    assert_eq!(
        of_kind(&got, "sam@example.test", "Reset").len(),
        1,
        "no second link to an unverified address whose change is pending: {got:?}"
    );
    for pending in ["sam@new.test", "tia@new.test"] {
        assert!(
            of_kind(&got, pending, "Reset").is_empty(),
            "never to the pending new address: {got:?}"
        );
    }
    assert_eq!(got.len(), 6, "{got:?}");

    // With auth.require_verified_email: nothing until the address is verified.
    let Some(strict_sink) = SmtpSink::start().await else {
        return;
    };
    let strict = TestApp::spawn_with(|raw| {
        email_config(raw, &strict_sink.url());
        raw.auth.require_verified_email = true;
    })
    .await;
    assert_eq!(
        signup_with_email(&strict, "uli", "uli@example.test")
            .await
            .status(),
        202
    );
    let got = strict_sink.wait_for(1, 10).await;
    let link = token_in(&got[0], "/verify");
    let res = strict
        .post_anon("/auth/password/forgot", &json!({"login": "uli"}))
        .await;
    assert_eq!(res.status(), 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        strict_sink.messages().len(),
        1,
        "no link to an unverified address"
    );
    assert_eq!(
        strict
            .post_anon("/auth/email/verify", &json!({"token": link}))
            .await
            .status(),
        200
    );
    let res = strict
        .post_anon("/auth/password/forgot", &json!({"login": "uli"}))
        .await;
    assert_eq!(res.status(), 202);
    let got = strict_sink.wait_for(2, 10).await;
    assert_eq!(
        of_kind(&got, "uli@example.test", "Reset").len(),
        1,
        "{got:?}"
    );
}

/// `email.templates_dir`: the overriding text and HTML reach the real SMTP server with the
/// product name, `public_url` and the link filled in, and the link works.
#[tokio::test]
async fn an_override_directory_changes_what_the_server_receives() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let templates = tempfile::tempdir().expect("dir");
    let write = |name: &str, body: &str| {
        std::fs::write(templates.path().join(name), body).expect("write");
    };
    write(
        "password_reset.subject.txt",
        "{{product}}: Reset link inside\n",
    );
    write(
        "password_reset.txt",
        "Hello {{username}}, follow {{link}} within {{minutes}} minutes. -- {{product}} at {{public_url}}\n",
    );
    write(
        "password_reset.html",
        "<p>Hello {{username}}, <a href=\"{{link}}\">choose a new password</a> ({{product}})</p>",
    );
    let dir = templates.path().display().to_string();
    let app = TestApp::spawn_with(|raw| {
        email_config(raw, &sink.url());
        raw.email.templates_dir = Some(dir);
    })
    .await;
    assert_eq!(
        signup_with_email(&app, "vic", "vic@example.test")
            .await
            .status(),
        201
    );
    sink.wait_for(1, 10).await;
    let res = app
        .post_anon("/auth/password/forgot", &json!({"login": "vic"}))
        .await;
    assert_eq!(res.status(), 202);
    let got = sink.wait_for(2, 10).await;
    let reset = of_kind(&got, "vic@example.test", "Reset link inside");
    assert_eq!(reset.len(), 1, "{got:?}");
    assert_eq!(reset[0]["headers"]["subject"], "Acme: Reset link inside");
    let text = reset[0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("Hello vic, follow https://www.acme.test/reset?token=vrst_"),
        "{text}"
    );
    assert!(
        text.contains("within 30 minutes. -- Acme at http"),
        "{text}"
    );
    let html = reset[0]["html"].as_str().expect("html");
    assert!(
        html.contains("<p>Hello vic, <a href=\"https://www.acme.test/reset?token=vrst_")
            && html.contains("(Acme)</p>"),
        "{html}"
    );
    // The built-in verification message is untouched.
    assert!(of_kind(&got, "vic@example.test", "Verify your address").len() == 1);
    let res = app
        .post_anon(
            "/auth/password/reset",
            &json!({"token": token_in(reset[0], "/reset"), "new_password": "new staple battery horse"}),
        )
        .await;
    assert_eq!(res.status(), 204);
}

/// A broken override is a configuration error naming the file, before anything is sent.
#[tokio::test]
async fn a_broken_template_is_a_configuration_error_at_start() {
    let templates = tempfile::tempdir().expect("dir");
    std::fs::write(
        templates.path().join("password_reset.txt"),
        "Follow {{lnik}} now\n",
    )
    .expect("write");
    let mut raw = crate::support::test_raw_config();
    email_config(&mut raw, "smtp://127.0.0.1:9");
    raw.email.templates_dir = Some(templates.path().display().to_string());
    match raw.validate() {
        Err(vestibule::config::ConfigError::Invalid(problems)) => {
            let p = problems
                .iter()
                .find(|p| p.key == "email.templates_dir")
                .unwrap_or_else(|| panic!("{problems:?}"));
            assert!(
                p.message.contains("password_reset.txt") && p.message.contains("{{lnik}}"),
                "{}",
                p.message
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a broken template was accepted"),
    }
}

/// At least once: a worker that sent a row and died before marking it leaves it to be sent
/// again after the lease. Both copies carry the same `Message-ID`, made of the row, so the
/// receiver can tell they are one message.
#[tokio::test]
async fn a_resent_message_keeps_its_message_id() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    // The app only lends its validated settings; the outbox here is a database of its own, so
    // no running worker touches it.
    let app = TestApp::spawn_with(|raw| email_config(raw, &sink.url())).await;
    let mailer = app.state.mailer.clone().expect("email on");
    let transport = vestibule::email::Transport::build(&mailer.settings)
        .expect("transport")
        .expect("smtp");
    let dir = tempfile::tempdir().expect("dir");
    let db = vestibule::db::Database::open(&dir.path().join("outbox.db"))
        .await
        .expect("db");
    let outbox = vestibule::email::Outbox::new(db.clone());
    outbox
        .enqueue(&mailer.render(
            vestibule::email::Kind::PasswordChanged,
            "wes@example.test",
            &[("username", "wes")],
        ))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(1);
    let first = outbox.claim(lease, 10).await.expect("claim");
    assert_eq!(first.len(), 1);
    transport
        .send(&mailer.settings.from, &first[0])
        .await
        .expect("sent");
    // The "crash": the row is never marked sent. After the lease it is claimed again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let c = outbox.claim(lease, 10).await.expect("claim");
        if !c.is_empty() {
            break c;
        }
        assert!(Instant::now() < deadline, "never claimed again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 2);
    transport
        .send(&mailer.settings.from, &again[0])
        .await
        .expect("sent");
    let got = sink.wait_for(2, 10).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let expected = format!("<outbox.{}.{}@acme.test>", first[0].id, first[0].created_at);
    assert_eq!(got[0]["headers"]["message-id"], expected.as_str());
    assert_eq!(got[1]["headers"]["message-id"], expected.as_str());
    db.close().await;
}
