//! The whole API on PostgreSQL (users, access tokens, durable sessions), through the same data
//! layer as SQLite, in a fresh schema per test.

use reqwest::Method;
use serde_json::{Value, json};
use vestibule::config::RawStore;

use crate::services::{self, PgSchema};
use crate::support::{PASSWORD, TestApp, assert_error};

#[tokio::test]
async fn accounts_tokens_and_sessions_work_on_postgres() {
    let Some((app, _schema)) = services::spawn_on_postgres(|_| {}).await else {
        return;
    };
    assert!(app.state.db.is_postgres());
    let mut alice = app.signed_up("alice", PASSWORD).await;
    // Usernames are unique regardless of case, as on SQLite.
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "ALICE", "password": PASSWORD}),
        )
        .await;
    assert_error(res, 409, "username_taken").await;
    let me: Value = alice.get("/auth/me").await.json().await.expect("json");
    assert_eq!(me["user"]["username"], "alice");
    // Logging in by another case finds the same user.
    let bearer = app.bearer_login("Alice", PASSWORD).await;
    let pat = alice
        .create_token(&json!({"name": "ci", "scopes": ["read", "write"]}))
        .await;
    for t in [&bearer, &pat] {
        let res = app
            .with_bearer(Method::GET, "/auth/me", t)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200);
    }
    let sessions: Value = alice
        .get("/auth/sessions")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(2));
    // A password change ends the other session and revokes the access token.
    let res = alice
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    alice.csrf = body["csrf_token"].as_str().map(str::to_owned);
    for t in [&bearer, &pat] {
        let res = app
            .with_bearer(Method::GET, "/auth/me", t)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 401, "revoked credential still accepted");
    }
    assert_eq!(alice.get("/auth/me").await.status(), 200);
    assert_eq!(
        app.post_anon(
            "/auth/login",
            &json!({"username": "alice", "password": PASSWORD})
        )
        .await
        .status(),
        401
    );
    assert_eq!(alice.post("/auth/logout").await.status(), 204);
    assert_error(alice.get("/auth/me").await, 401, "not_authenticated").await;
    app.stop().await;
}

/// A PostgreSQL that does not answer in time (here: the sessions table locked by another
/// connection) gives 503 `store_unavailable` within the store timeout, `/healthz` keeps answering,
/// and the same session works again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_postgres_gives_bounded_503s_and_recovers() {
    use sqlx::Connection;
    use std::time::{Duration, Instant};
    let Some((app, schema)) = services::spawn_on_postgres(|raw| {
        raw.session.store_timeout = "300ms".into();
    })
    .await
    else {
        return;
    };
    let alice = app.signed_up("alice", PASSWORD).await;
    assert_eq!(alice.get("/auth/me").await.status(), 200);
    let mut locker = sqlx::PgConnection::connect(&schema.url)
        .await
        .expect("connect");
    let mut tx = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .expect("lock");
    let started = Instant::now();
    let res = alice.get("/auth/me").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request waited on the lock"
    );
    assert_error(res, 503, "store_unavailable").await;
    assert_eq!(alice.get("/healthz").await.status(), 200);
    tx.rollback().await.expect("unlock");
    assert_eq!(alice.get("/auth/me").await.status(), 200);
    app.stop().await;
}

/// Polls `path` until it answers `status` (at most 10 s).
async fn eventually(client: &crate::support::TestClient, path: &str, status: u16) -> bool {
    for _ in 0..100 {
        if client.get(path).await.status() == status {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// PostgreSQL is down when the server starts (a relay the test owns is off): the server starts
/// anyway, live but not ready, and what needs the database gets a bounded 503. Once it answers,
/// the migrations run into the fresh schema and everything works with no restart; a later outage
/// and recovery behave the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starts_while_postgres_is_down_and_recovers_without_restart() {
    use std::time::{Duration, Instant};
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let relay = services::Relay::start(services::socket_of(&schema.url), false).await;
    let url = services::via_port(&schema.url, relay.port);
    let app = TestApp::spawn_with(|raw| {
        raw.database_url = url;
        raw.session.store = RawStore::One("database".into());
        raw.session.store_timeout = "300ms".into();
    })
    .await;
    let visitor = app.client();
    assert_eq!(visitor.get("/healthz").await.status(), 200);
    assert_error(visitor.get("/readyz").await, 503, "store_unavailable").await;
    let started = Instant::now();
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(5), "signup hung");
    assert_error(res, 503, "store_unavailable").await;

    // The database answers: migrated on first contact, ready, usable.
    relay.set(true);
    assert!(eventually(&visitor, "/readyz", 200).await, "never ready");
    let alice = app.signed_up("alice", PASSWORD).await;
    assert_eq!(alice.get("/auth/me").await.status(), 200);

    // Down again: bounded 503s; back: the same session works.
    relay.set(false);
    let started = Instant::now();
    let res = alice.get("/auth/me").await;
    assert!(started.elapsed() < Duration::from_secs(5), "a request hung");
    assert_error(res, 503, "store_unavailable").await;
    assert_eq!(alice.get("/healthz").await.status(), 200);
    assert_error(alice.get("/readyz").await, 503, "store_unavailable").await;
    relay.set(true);
    assert!(
        eventually(&alice, "/auth/me", 200).await,
        "the session never came back"
    );
    app.stop().await;
}

/// One-shot commands (`vestibule user …`) connect strictly: an unreachable PostgreSQL is an error
/// at once, naming it without its password; only the server waits for it.
#[tokio::test]
async fn a_one_shot_connect_to_an_unreachable_postgres_fails_clearly() {
    use vestibule::db::{Database, DatabaseLocation, DbError};
    let url = services::via_port(
        "postgres://vestibule:hunter2@127.0.0.1:5432/test",
        services::free_port(),
    );
    let location = DatabaseLocation::parse(&url).expect("a PostgreSQL URL");
    let err = Database::connect(&location, std::time::Duration::from_millis(300))
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Issue 21 item 1: the deterministic canonical username on PostgreSQL (the non-deterministic ICU
/// collation made `ａｄｍｉｎ` log in as `admin` with a fresh rate-limit budget).
#[tokio::test]
async fn one_canonical_username_on_postgres() {
    let Some((app, _schema)) = services::spawn_on_postgres(crate::account::canonical_limits).await
    else {
        return;
    };
    crate::account::one_canonical_username(&app).await;
}

/// Issue 21 item 1: NUL and other input PostgreSQL cannot take is refused before any query (it
/// answered 503 `store_unavailable` and logged an ERROR).
#[tokio::test]
async fn no_string_field_makes_a_5xx_on_postgres() {
    let Some((app, _schema)) = services::spawn_on_postgres(|_| {}).await else {
        return;
    };
    crate::account::no_string_field_makes_a_5xx(&app).await;
}
