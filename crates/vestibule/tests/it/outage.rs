//! The session store goes away and comes back: requests that need it get 503
//! `store_unavailable` within the configured bound, `/readyz` says not ready, requests that need
//! no store keep working, and everything recovers without a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use vestibule::config::RawStore;

use crate::services::{self, OwnedRedis};
use crate::support::{TestApp, assert_error};

/// Far above the configured 300 ms store timeout, far below a hang.
const BOUND: Duration = Duration::from_secs(5);

async fn outage_and_recovery(cache: bool) {
    let Some(mut redis) = OwnedRedis::start(&[]).await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(|raw| {
        raw.session.store = RawStore::One(url.clone());
        raw.session.redis_cache = cache;
        raw.session.redis_prefix = services::random_prefix();
        raw.session.store_timeout = "300ms".into();
    })
    .await;
    let alice = app.signed_up("alice", "correct horse battery").await;
    assert_eq!(alice.get("/auth/me").await.status(), StatusCode::OK);
    assert_eq!(alice.get("/readyz").await.status(), StatusCode::OK);

    // Slow: every client paused for 2 s. The request gives up at the bound.
    let out = redis.cli(&["client", "pause", "2000", "ALL"]);
    assert!(out.status.success(), "{out:?}");
    let started = Instant::now();
    let res = alice.get("/auth/sessions").await;
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "waited out the pause"
    );
    assert_error(res, 503, "store_unavailable").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(alice.get("/auth/me").await.status(), StatusCode::OK);

    // Down.
    redis.stop();
    let mut last = None;
    for _ in 0..30 {
        let started = Instant::now();
        let res = alice.get("/auth/me").await;
        assert!(
            started.elapsed() < BOUND,
            "a request hung on the dead store"
        );
        // A cached session may still answer until the cache notices its feed is gone.
        let status = res.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            last = Some(res);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_error(
        last.expect("503 once the store is down"),
        503,
        "store_unavailable",
    )
    .await;
    let started = Instant::now();
    assert_error(alice.get("/readyz").await, 503, "store_unavailable").await;
    assert!(started.elapsed() < BOUND);
    // What needs no store keeps working: liveness, and a visitor without a session.
    assert_eq!(alice.get("/healthz").await.status(), StatusCode::OK);
    let visitor = app.client();
    assert_eq!(visitor.get("/auth/csrf").await.status(), StatusCode::OK);
    assert_error(visitor.get("/auth/me").await, 401, "not_authenticated").await;

    // Back (same data: the append-only file): the same session works again, no restart.
    redis.launch().await.expect("redis restarts");
    let mut ready = false;
    for _ in 0..100 {
        if alice.get("/readyz").await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never recovered");
    let mut ok = false;
    for _ in 0..50 {
        if alice.get("/auth/me").await.status() == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the session never came back");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_bounded_503s_and_recovers() {
    outage_and_recovery(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_redis_outage_gives_bounded_503s_and_recovers() {
    outage_and_recovery(true).await;
}

/// A server whose Redis is not there at all starts anyway (not ready), answers what needs no
/// store, and refuses the rest with a bounded 503 instead of hanging or crashing; once a Redis
/// appears at that address it becomes ready and works, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starts_not_ready_when_redis_is_absent() {
    let port = services::free_port(); // nothing listens there
    let app = TestApp::spawn_with(|raw| {
        raw.session.store = RawStore::One(format!("redis://127.0.0.1:{port}/0"));
        raw.session.store_timeout = "300ms".into();
    })
    .await;
    let c = app.client();
    assert_eq!(c.get("/healthz").await.status(), StatusCode::OK);
    assert_error(c.get("/readyz").await, 503, "store_unavailable").await;
    let mut c = app.client();
    let started = Instant::now();
    let res = c
        .post_json(
            "/auth/signup",
            &serde_json::json!({"username": "zoe", "password": "correct horse battery"}),
        )
        .await;
    assert!(started.elapsed() < BOUND);
    assert_error(res, 503, "store_unavailable").await;

    let Some(_redis) = OwnedRedis::start_on(port, &[]).await else {
        return;
    };
    let mut ready = false;
    for _ in 0..100 {
        if c.get("/readyz").await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never recovered once Redis came up");
    // The refused signup left nothing behind: the same name signs up now.
    let zoe = app.signed_up("zoe", "correct horse battery").await;
    assert_eq!(zoe.get("/auth/me").await.status(), StatusCode::OK);
    app.stop().await;
}
