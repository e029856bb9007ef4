//! The token relay's refresh across instances: two Vestibule instances on one Redis serve the
//! same session; when its access token is due, one of them refreshes (the provider rotates
//! refresh tokens: a second refresh with the old one would be refused and end the session), the
//! other waits and relays the same new token.

use std::sync::Arc;

use reqwest::Client;
use serde_json::{Value, json};
use vestibule::config::{RawConfig, SecretString};
use vestibule::session::stores::RedisConfig;

use super::{
    Idp, browser, callback, echo_upstream, free_port, provider, provider_accepts, provider_login,
};
use crate::support::TestApp;

/// The provider's count of refresh grants: (served, refused).
async fn refreshes(idp: &Idp) -> (u64, u64) {
    let v: Value = reqwest::get(format!("{}/_test/refreshes", idp.issuer))
        .await
        .expect("counter")
        .json()
        .await
        .expect("json");
    (
        v["refreshes"].as_u64().expect("refreshes"),
        v["refresh_errors"].as_u64().expect("errors"),
    )
}

/// What the two instances share their sessions through.
enum Shared<'a> {
    /// One Redis (same prefix); B keeps a read cache, A does when the flag says so.
    Redis(&'a RedisConfig, bool),
    /// One PostgreSQL database (its URL) for users and sessions.
    Postgres(&'a str),
}

/// Two instances of one deployment: one user database, one session store, one secret_key,
/// both answering for instance A's public_url, relaying `/api` to `upstream` with the
/// provider's access token.
struct Pair {
    a: TestApp,
    b: TestApp,
    idp: Idp,
}

/// Starts the provider (access tokens living `ttl` seconds) and the two instances; `None` when
/// the provider cannot run here (the skip message was printed).
async fn two_instances(shared: Shared<'_>, ttl: u64) -> Option<Pair> {
    let (port_a, port_b) = (free_port(), free_port());
    let cb = format!("http://127.0.0.1:{port_a}/auth/oidc/test/callback");
    let idp = Idp::start(json!({"redirect_uris": [cb], "access_token_ttl": ttl})).await?;
    let upstream = echo_upstream().await;
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let setup = |raw: &mut RawConfig, port: u16| {
        raw.listen = format!("127.0.0.1:{port}");
        raw.public_url = Some(format!("http://127.0.0.1:{port_a}"));
        raw.secret_key = Some(SecretString(
            "an-oidc-test-secret-key-of-32-chars-or-more".into(),
        ));
        raw.oidc.signup = true;
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        match &shared {
            Shared::Redis(redis, _) => {
                raw.session.store = vestibule::config::RawStore::One(redis.urls[0].clone());
                raw.session.redis_prefix = redis.prefix.clone();
            }
            Shared::Postgres(url) => {
                raw.database_url = (*url).to_owned();
                raw.session.store = vestibule::config::RawStore::One("database".into());
            }
        }
        super::relay_api(raw, &upstream);
    };
    let a = TestApp::spawn_in(dir.clone(), |raw| {
        setup(raw, port_a);
        if let Shared::Redis(_, cache_a) = shared {
            raw.session.redis_cache = cache_a;
        }
    })
    .await;
    let b = TestApp::spawn_in(dir.clone(), |raw| setup(raw, port_b)).await;
    Some(Pair { a, b, idp })
}

/// What the upstream received as `Authorization` for one call through `app`.
async fn relayed(c: Client, app_url: String) -> String {
    let res = c.get(app_url).send().await.expect("api");
    assert_eq!(res.status(), 200, "the relayed call answered");
    res.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_refresh_a_session_once_and_relay_the_same_token() {
    let Some((redis, _guard)) = crate::store_conformance::redis_config().await else {
        return;
    };
    // Access tokens live 6 s, so the relay refreshes within 3 s of expiry: a token refreshed
    // during the concurrent calls below is not due again before they have all finished, even on
    // a loaded machine (with 2 s tokens a slow run saw a legitimate second refresh).
    if let Some(pair) = two_instances(Shared::Redis(&redis, true), 6).await {
        refresh_once_across(pair).await;
    }
}

/// The same on PostgreSQL: the lock is a row in `shared_locks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_refresh_a_session_once_and_relay_the_same_token() {
    let Some(schema) = crate::services::PgSchema::create().await else {
        return;
    };
    if let Some(pair) = two_instances(Shared::Postgres(&schema.url), 6).await {
        refresh_once_across(pair).await;
    }
}

/// Logs in through A, then, once the access token is due, sends concurrent calls through both
/// instances: one refresh at the provider, one new token for every call.
async fn refresh_once_across(Pair { a, b, idp }: Pair) {
    let c = browser();
    let cb_url = provider_login(&c, &a, "nina", "/").await;
    assert_eq!(callback(&c, &cb_url).await, a.url("/"));
    let first = relayed(c.clone(), a.url("/api/y")).await;
    assert!(first.starts_with("Bearer "), "{first:?}");
    assert_eq!(
        relayed(c.clone(), b.url("/api/y")).await,
        first,
        "B serves the same session"
    );
    assert_eq!(refreshes(&idp).await, (0, 0));

    // Past the refresh point: concurrent calls through both instances.
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            tokio::spawn(relayed(c.clone(), app.url("/api/y")))
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.expect("task"));
    }
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "one new token for every call: {tokens:?}"
    );
    assert_ne!(tokens[0], first, "refreshed");
    assert_eq!(
        refreshes(&idp).await,
        (1, 0),
        "the provider saw one refresh, and no refused one"
    );
    // And the session goes on through either instance, with a token the provider accepts.
    for app in [&b, &a] {
        let token = relayed(c.clone(), app.url("/api/y")).await;
        assert!(provider_accepts(&idp, &token).await, "{token}");
    }
    assert_eq!(refreshes(&idp).await.1, 0, "no refresh was refused");
}

/// An instance decides whether to refresh from the shared store, never from its own read
/// cache: the cache learns of another instance's write through the invalidation feed, which
/// arrives a moment later (or, during a feed outage, not at all). Here instance A runs without a
/// cache, so its writes are never announced and B's cached copy stays stale for as long as the
/// test needs: the window made deterministic. Before the fix B, finding the lock free, compared
/// the tokens in its stale copy with themselves, refreshed with the refresh token A had already
/// used up, and the provider refused it: the session ended (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_a_stale_cached_copy_takes_the_refreshed_tokens_from_the_store() {
    let Some((redis, _guard)) = crate::store_conformance::redis_config().await else {
        return;
    };
    let Some(Pair { a, b, idp }) = two_instances(Shared::Redis(&redis, false), 6).await else {
        return;
    };
    let c = browser();
    let cb_url = provider_login(&c, &a, "nina", "/").await;
    assert_eq!(callback(&c, &cb_url).await, a.url("/"));
    let first = relayed(c.clone(), b.url("/api/y")).await;
    assert!(first.starts_with("Bearer "), "{first:?}");

    // Due: A refreshes (B's cached copy still holds the first tokens).
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    let refreshed = relayed(c.clone(), a.url("/api/y")).await;
    assert_ne!(refreshed, first, "A refreshed");
    assert_eq!(refreshes(&idp).await, (1, 0));

    // B's copy says "due"; the store says "refreshed": B relays A's token, no second refresh.
    assert_eq!(relayed(c.clone(), b.url("/api/y")).await, refreshed);
    assert_eq!(
        refreshes(&idp).await,
        (1, 0),
        "no second refresh, none refused"
    );
    assert!(provider_accepts(&idp, &refreshed).await);
}
