//! `vestibule outbox list|retry|purge` on an outbox with a sent, a given-up and a pending
//! message: what is listed (never a body), what a retry puts back, what a purge deletes.

use std::path::Path;
use std::time::Duration;

use vestibule::db::Database;
use vestibule::email::{Outbox, Outgoing};

use super::{text, vestibule};

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn message(to: &str) -> Outgoing {
    Outgoing {
        kind: "password_reset",
        recipient: to.to_owned(),
        subject: "Reset your password".into(),
        text: "https://www.acme.test/reset?token=vrst_LIVESECRETTOKEN".into(),
        html: "<a href=\"https://www.acme.test/reset?token=vrst_LIVESECRETTOKEN\">reset</a>".into(),
    }
}

/// Writes three messages into `dir`'s database: 1 sent, 2 given up, 3 pending after a failure.
fn seed(dir: &Path) {
    block_on(async {
        let db = Database::open(&dir.join("vestibule.db")).await.expect("db");
        let outbox = Outbox::new(db.clone());
        for to in ["sent@acme.test", "gaveup@acme.test", "pending@acme.test"] {
            outbox.enqueue(&message(to)).await.expect("enqueue");
        }
        let claimed = outbox
            .claim(Duration::from_secs(60), 10)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 3);
        outbox.mark_sent(claimed[0].id).await.expect("sent");
        outbox
            .mark_failed(claimed[1].id, "550 5.1.1 mailbox unavailable\u{1b}[2K")
            .await
            .expect("failed");
        outbox
            .mark_retry(
                claimed[2].id,
                vestibule::session::now() + 600,
                "connection refused",
            )
            .await
            .expect("retry");
        db.close().await;
    });
}

fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = vestibule(dir).args(args).output().expect("run");
    (out.status.success(), text(&out))
}

/// The line of the listing that names `recipient`.
fn line<'a>(listing: &'a str, recipient: &str) -> Option<&'a str> {
    listing.lines().find(|l| l.contains(recipient))
}

#[test]
fn outbox_list_retry_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed(dir.path());

    let (ok, listing) = run(dir.path(), &["outbox", "list"]);
    assert!(ok, "{listing}");
    assert!(!listing.contains("LIVESECRET"), "no body: {listing}");
    assert!(line(&listing, "sent@acme.test").is_none(), "{listing}");
    let failed = line(&listing, "gaveup@acme.test").expect("given-up row");
    assert!(
        failed.contains("failed") && failed.contains("550 5.1.1"),
        "{failed}"
    );
    // The stored error is shown, its escape sequence escaped.
    assert!(
        failed.contains("\\u{1b}[2K") && !failed.contains('\u{1b}'),
        "{failed}"
    );
    let pending = line(&listing, "pending@acme.test").expect("pending row");
    assert!(
        pending.contains("pending") && pending.contains("connection refused"),
        "{pending}"
    );
    assert!(listing.contains("1 pending, 1 given up"), "{listing}");
    let (ok, all) = run(dir.path(), &["outbox", "list", "--all"]);
    assert!(
        ok && line(&all, "sent@acme.test").is_some_and(|l| l.contains("sent")),
        "{all}"
    );

    // A sent message is never re-sent; an unknown id says so.
    let (ok, out) = run(dir.path(), &["outbox", "retry", "1"]);
    assert!(!ok && out.contains("no unsent message with id 1"), "{out}");
    let (ok, out) = run(dir.path(), &["outbox", "retry", "99"]);
    assert!(!ok, "{out}");
    // Neither an id nor --all-failed: a usage error.
    let out = vestibule(dir.path())
        .args(["outbox", "retry"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let (ok, out) = run(dir.path(), &["outbox", "retry", "--all-failed"]);
    assert!(
        ok && out.contains("1 message(s) back in the queue"),
        "{out}"
    );
    let (_, listing) = run(dir.path(), &["outbox", "list"]);
    let back = line(&listing, "gaveup@acme.test").expect("row");
    assert!(back.contains("pending"), "{back}");
    assert!(listing.contains("2 pending, 0 given up"), "{listing}");
    // The retried row is due now, with its body intact for the worker.
    block_on(async {
        let db = Database::open(&dir.path().join("vestibule.db"))
            .await
            .expect("db");
        let claimed = Outbox::new(db.clone())
            .claim(Duration::from_secs(60), 10)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "only the retried row is due: {claimed:?}");
        assert_eq!(claimed[0].recipient, "gaveup@acme.test");
        assert!(claimed[0].text.contains("vrst_LIVESECRETTOKEN"));
        assert_eq!(claimed[0].attempts, 1, "a fresh start");
        db.close().await;
    });

    // Purge: the sent row goes; the pending ones stay.
    let (ok, out) = run(
        dir.path(),
        &["outbox", "purge", "--sent-before", "bad date"],
    );
    assert!(!ok && out.contains("--sent-before"), "{out}");
    let (ok, out) = run(
        dir.path(),
        &["outbox", "purge", "--sent-before", "2000-01-01"],
    );
    assert!(ok && out.contains("deleted 0 message(s)"), "{out}");
    let (ok, out) = run(
        dir.path(),
        &[
            "outbox",
            "purge",
            "--sent-before",
            "2999-01-01",
            "--failed-before",
            "1h",
        ],
    );
    assert!(ok && out.contains("deleted 1 message(s)"), "{out}");
    let (_, all) = run(dir.path(), &["outbox", "list", "--all"]);
    assert!(line(&all, "sent@acme.test").is_none(), "{all}");
    assert!(line(&all, "gaveup@acme.test").is_some(), "{all}");
    assert!(line(&all, "pending@acme.test").is_some(), "{all}");
}

/// `vestibule user set-password` tells the user like their own change does: the notice is in the
/// outbox with the new password (to the verified address; nothing with email off).
#[test]
fn set_password_queues_the_password_changed_notice() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("vestibule.toml"),
        "[email]\ntransport = \"log\"\n",
    )
    .expect("config");
    // Two accounts with an address: one verified, one not.
    block_on(async {
        use vestibule::auth::{Password, PasswordHasher, Username};
        let db = Database::open(&dir.path().join("vestibule.db"))
            .await
            .expect("db");
        let hash = PasswordHasher::new(1)
            .await
            .expect("hasher")
            .hash(&Password::new("an old passphrase"))
            .await
            .expect("hash");
        for (name, verified) in [("vera", true), ("una", false)] {
            let mut token = None;
            vestibule::auth::email::create_with_email(
                &db,
                &Username::parse(name).expect("name"),
                &hash,
                &vestibule::email::EmailAddress::parse(&format!("{name}@acme.test"))
                    .expect("email"),
                |t| {
                    token = Some(t.expose().to_owned());
                    None
                },
            )
            .await
            .expect("user");
            if verified {
                let t = vestibule::token::SecretToken::parse(
                    vestibule::token::TokenKind::EmailVerification,
                    &token.expect("token"),
                )
                .expect("parse");
                vestibule::auth::email::verify(&db, &t, |_| vestibule::email::Notice::none())
                    .await
                    .expect("verify")
                    .expect("verified");
            }
        }
        db.close().await;
    });
    for name in ["vera", "una"] {
        let out = super::run_with_stdin(
            dir.path(),
            &["user", "set-password", name, "--password-stdin"],
            "a new fine passphrase\n",
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let (ok, listing) = run(dir.path(), &["outbox", "list"]);
    assert!(ok, "{listing}");
    let vera = line(&listing, "vera@acme.test").expect("vera's notice");
    assert!(
        vera.contains("password_changed") && vera.contains("pending"),
        "{vera}"
    );
    assert!(
        line(&listing, "una@acme.test").is_none(),
        "an unverified address gets no notice: {listing}"
    );
}
