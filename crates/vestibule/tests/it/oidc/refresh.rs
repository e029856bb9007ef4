//! The token relay's refresh across instances: two Vestibule instances on one Redis serve the
//! same session; when its access token is due, one of them refreshes (the provider rotates
//! refresh tokens: a second refresh with the old one would be refused and end the session), the
//! other waits and relays the same new token.

use std::sync::Arc;

use serde_json::{Value, json};
use vestibule::config::{RawConfig, SecretString};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_refresh_a_session_once_and_relay_the_same_token() {
    let Some((redis, _guard)) = crate::store_conformance::redis_config().await else {
        return;
    };
    let (port_a, port_b) = (free_port(), free_port());
    let cb = format!("http://127.0.0.1:{port_a}/auth/oidc/test/callback");
    // Access tokens live 2 s: the relay refreshes within a second of expiry.
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb], "access_token_ttl": 2})).await else {
        return;
    };
    let upstream = echo_upstream().await;
    // One user database, one Redis (same prefix), one secret_key: two instances of one
    // deployment, both answering for public_url A's sessions.
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let setup = |raw: &mut RawConfig, port: u16| {
        raw.listen = format!("127.0.0.1:{port}");
        raw.public_url = Some(format!("http://127.0.0.1:{port_a}"));
        raw.secret_key = Some(SecretString(
            "an-oidc-test-secret-key-of-32-chars-or-more".into(),
        ));
        raw.oidc.signup = true;
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        raw.session.store = vestibule::config::RawStore::One(redis.urls[0].clone());
        raw.session.redis_prefix = redis.prefix.clone();
        raw.upstream.push(vestibule::proxy::RawUpstream {
            prefix: "/api".into(),
            url: upstream.clone(),
            forward_access_token: true,
            ..Default::default()
        });
    };
    let a = TestApp::spawn_in(dir.clone(), |raw| setup(raw, port_a)).await;
    let b = TestApp::spawn_in(dir.clone(), |raw| setup(raw, port_b)).await;

    let c = browser();
    let cb_url = provider_login(&c, &a, "nina", "/").await;
    assert_eq!(callback(&c, &cb_url).await, a.url("/"));
    let relayed = |app: &TestApp| {
        let c = c.clone();
        let url = app.url("/api/y");
        async move {
            let res = c.get(url).send().await.expect("api");
            assert_eq!(res.status(), 200);
            res.text().await.expect("body")
        }
    };
    let first = relayed(&a).await;
    assert!(first.starts_with("Bearer "), "{first:?}");
    assert_eq!(relayed(&b).await, first, "B serves the same session");
    assert_eq!(refreshes(&idp).await, (0, 0));

    // Past the refresh point: concurrent calls through both instances.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let calls: Vec<_> = (0..6)
        .map(|i| tokio::spawn(relayed(if i % 2 == 0 { &a } else { &b })))
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
    // And the session goes on through either instance, with a token the provider accepts (it
    // may have been refreshed once more meanwhile: these tokens live 2 s).
    for app in [&b, &a] {
        let token = relayed(app).await;
        assert!(provider_accepts(&idp, &token).await, "{token}");
    }
    assert_eq!(refreshes(&idp).await.1, 0, "no refresh was refused");
}
