//! RFC 7009 at logout: the provider's tokens a session kept for the relay are revoked at the
//! provider's `revocation_endpoint` when the user logs out, so a copy of them (the access token
//! an upstream saw, a store backup) stops working. `oidc-provider` logs every revocation
//! request (`GET /_test/revocations`) and ends the grant when one of its tokens is revoked.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};

use super::{
    Idp, browser, callback, echo_upstream, free_port, me, provider, provider_accepts,
    provider_login, vestibule,
};
use crate::support::TestApp;

/// The revocation requests the provider has served so far.
pub(super) async fn revocations(idp: &Idp) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_test/revocations", idp.issuer))
        .await
        .expect("revocation log")
        .json()
        .await
        .expect("json");
    v["requests"].as_array().expect("requests").clone()
}

/// Waits (up to 10 s: the requests go out after the logout has answered) until the provider
/// has served `n` revocation requests; they.
pub(super) async fn until_revocations(idp: &Idp, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let seen = revocations(idp).await;
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {n} revocation requests, the provider saw {:?}",
        revocations(idp).await
    );
}

/// The provider (client `vestibule`, client_secret_basic) and Vestibule relaying its access
/// token to an echo upstream at `/api`; `None` when the provider cannot run here.
async fn relaying_app() -> Option<(Idp, TestApp)> {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let idp = Idp::start(json!({"redirect_uris": [cb]})).await?;
    let upstream = echo_upstream().await;
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        super::relay_api(raw, &upstream);
    })
    .await;
    Some((idp, app))
}

/// Logs `who` in through the provider on `app` (whose `/api` relays the access token to an
/// echo upstream); the browser, and the access token the upstream received.
pub(super) async fn login_and_relay(app: &TestApp, idp: &Idp, who: &str) -> (Client, String) {
    let c = browser();
    let cb = provider_login(&c, app, who, "/").await;
    assert_eq!(callback(&c, &cb).await, app.url("/"));
    let res = c.get(app.url("/api/x")).send().await.expect("api");
    assert_eq!(res.status(), 200);
    let relayed = res.text().await.expect("body");
    assert!(relayed.starts_with("Bearer "), "{relayed:?}");
    assert!(
        provider_accepts(idp, &relayed).await,
        "the relayed token is live"
    );
    (c, relayed)
}

/// `POST path` as the browser `c`, with its CSRF token and origin.
pub(super) async fn logout(c: &Client, app: &TestApp, path: &str) -> reqwest::Response {
    let csrf = me(c, app).await["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    c.post(app.url(path))
        .header("x-csrf-token", csrf)
        .header("origin", app.url("").trim_end_matches('/'))
        .send()
        .await
        .expect("logout")
}

#[tokio::test]
async fn a_logout_revokes_the_providers_tokens_so_a_copy_of_them_stops_working() {
    let Some((idp, app)) = relaying_app().await else {
        return;
    };
    let (c, relayed) = login_and_relay(&app, &idp, "ivan").await;
    assert!(revocations(&idp).await.is_empty(), "nothing revoked yet");

    let res = logout(&c, &app, "/auth/logout").await;
    assert_eq!(res.status(), 204);
    let seen = until_revocations(&idp, 2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The refresh token first, then the access token; both as the client the token endpoint
    // knows (client_secret_basic), both accepted.
    for (entry, hint) in seen.iter().zip(["refresh_token", "access_token"]) {
        assert_eq!(entry["token_type_hint"], hint, "{seen:?}");
        assert_eq!(entry["method"], "client_secret_basic", "{seen:?}");
        assert_eq!(entry["client_id"], "vestibule", "{seen:?}");
        assert_eq!(entry["status"], 200, "{seen:?}");
    }
    // The attack: a copy of the access token (the upstream saw it) no longer works at the
    // provider; the grant behind the refresh token has ended.
    assert!(
        !provider_accepts(&idp, &relayed).await,
        "the access token was revoked with the grant"
    );

    // A session that did not log in through the provider revokes nothing.
    let other = app.signed_up("judy", "quiet-harbour-lantern-42").await;
    assert_eq!(other.post("/auth/logout").await.status(), 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(revocations(&idp).await.len(), 2, "no request for it");
}

#[tokio::test]
async fn logout_everywhere_revokes_the_callers_provider_tokens_and_a_dead_provider_does_not_fail_a_logout()
 {
    let Some((idp, app)) = relaying_app().await else {
        return;
    };
    // logout-all: the caller's own provider tokens go too.
    let (c, relayed) = login_and_relay(&app, &idp, "kim").await;
    let res = logout(&c, &app, "/auth/logout-all").await;
    assert_eq!(res.status(), 204);
    let seen = until_revocations(&idp, 2).await;
    assert!(seen.iter().all(|e| e["status"] == 200), "{seen:?}");
    assert!(!provider_accepts(&idp, &relayed).await, "revoked");

    // With the provider gone, a logout still answers at once and ends the session.
    let (c, _) = login_and_relay(&app, &idp, "lee").await;
    drop(idp);
    let res = logout(&c, &app, "/auth/logout").await;
    assert_eq!(
        res.status(),
        204,
        "the revocation's failure is not the logout's"
    );
    let res = c.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "logged out here");
}
