//! RFC 7009 when a session ends: the provider's tokens a session kept for the relay are revoked
//! at the provider's `revocation_endpoint` whichever way the session ends (logout, the session
//! list, logout everywhere, the session cap, the administrator's commands; the back-channel
//! logout's case is in `oidc_logout.rs`), so a copy of them (the access token an upstream saw,
//! a store backup) stops working. `oidc-provider` logs every revocation request
//! (`GET /_test/revocations`) and ends the grant when one of its tokens is revoked.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use vestibule::config::{RawConfig, RawStore, SecretList};

use super::{
    Idp, browser, callback, echo_upstream, free_port, me, provider, provider_accepts,
    provider_login, vestibule,
};
use crate::support::TestApp;

/// The revocation requests the provider has served so far.
pub(crate) async fn revocations(idp: &Idp) -> Vec<Value> {
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
pub(crate) async fn until_revocations(idp: &Idp, n: usize) -> Vec<Value> {
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
/// token to an echo upstream at `/api`, after `tweak`; `None` when the provider cannot run here.
async fn relaying_app(tweak: impl FnOnce(&mut RawConfig)) -> Option<(Idp, TestApp)> {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let idp = Idp::start(json!({"redirect_uris": [cb]})).await?;
    let upstream = echo_upstream().await;
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        super::relay_api(raw, &upstream);
        tweak(raw);
    })
    .await;
    Some((idp, app))
}

/// Asserts that the provider saw exactly the revocations of `expected` (access tokens as
/// relayed, `Bearer …`), each refresh token before its access token, all accepted; checked
/// again after a pause, so a request sent twice would show.
async fn assert_revoked_exactly(idp: &Idp, expected: &[&str]) {
    let seen = until_revocations(idp, 2 * expected.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen_after = revocations(idp).await;
    assert_eq!(seen_after.len(), seen.len(), "{seen_after:?}");
    assert_eq!(seen.len(), 2 * expected.len(), "{seen:?}");
    assert!(seen.iter().all(|e| e["status"] == 200), "{seen:?}");
    for relayed in expected {
        assert!(
            !provider_accepts(idp, relayed).await,
            "an ended session's access token was revoked"
        );
    }
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
pub(crate) async fn logout(c: &Client, app: &TestApp, path: &str) -> reqwest::Response {
    with_csrf(c, app, reqwest::Method::POST, path).await
}

/// `method path` as the browser `c`, with its CSRF token and origin.
async fn with_csrf(
    c: &Client,
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
) -> reqwest::Response {
    let csrf = me(c, app).await["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    c.request(method, app.url(path))
        .header("x-csrf-token", csrf)
        .header("origin", app.url("").trim_end_matches('/'))
        .send()
        .await
        .expect("logout")
}

#[tokio::test]
async fn a_logout_revokes_the_providers_tokens_so_a_copy_of_them_stops_working() {
    let Some((idp, app)) = relaying_app(|_| {}).await else {
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
async fn logout_everywhere_revokes_the_provider_tokens_of_every_session_once_and_a_dead_provider_does_not_fail_a_logout()
 {
    let Some((idp, app)) = relaying_app(|_| {}).await else {
        return;
    };
    // Two browsers of one user: logout-all from the first ends both, and revokes both.
    let (c, first) = login_and_relay(&app, &idp, "kim").await;
    let (other, second) = login_and_relay(&app, &idp, "kim").await;
    let res = logout(&c, &app, "/auth/logout-all").await;
    assert_eq!(res.status(), 204);
    // Four requests, not six: the caller's session, ended with the others, is not revoked
    // again when its own logout follows.
    assert_revoked_exactly(&idp, &[&first, &second]).await;
    let res = other.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401);

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

#[tokio::test]
async fn ending_another_session_from_the_session_list_revokes_its_provider_tokens_only() {
    let Some((idp, app)) = relaying_app(|_| {}).await else {
        return;
    };
    let (c, mine) = login_and_relay(&app, &idp, "mia").await;
    let (other, theirs) = login_and_relay(&app, &idp, "mia").await;
    let list: Value = c
        .get(app.url("/auth/sessions"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("the other session")
        .to_owned();
    let res = with_csrf(
        &c,
        &app,
        reqwest::Method::DELETE,
        &format!("/auth/sessions/{id}"),
    )
    .await;
    assert_eq!(res.status(), 204);
    assert_revoked_exactly(&idp, &[&theirs]).await;
    let res = other.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "that session ended");
    // The caller's own session and its provider tokens are untouched.
    assert_eq!(
        c.get(app.url("/api/x")).send().await.expect("api").status(),
        200
    );
    assert!(
        provider_accepts(&idp, &mine).await,
        "the caller's token lives"
    );
}

#[tokio::test]
async fn the_session_cap_revokes_the_provider_tokens_of_the_session_it_ends() {
    let Some((idp, app)) = relaying_app(|raw| raw.limits.max_sessions_per_user = 1).await else {
        return;
    };
    let (first, oldest) = login_and_relay(&app, &idp, "ned").await;
    let (_, newest) = login_and_relay(&app, &idp, "ned").await;
    assert_revoked_exactly(&idp, &[&oldest]).await;
    let res = first.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "the cap ended the oldest");
    assert!(
        provider_accepts(&idp, &newest).await,
        "the new login's token lives"
    );
}

#[tokio::test]
async fn on_the_cookie_store_a_logout_revokes_the_provider_tokens_kept_in_the_cookie() {
    let Some((idp, app)) = relaying_app(|raw| {
        use base64::Engine;
        raw.session.store = RawStore::One("cookie".into());
        raw.session.cookie_keys = SecretList(vec![
            base64::engine::general_purpose::STANDARD.encode([5u8; 32]),
        ]);
    })
    .await
    else {
        return;
    };
    let (c, relayed) = login_and_relay(&app, &idp, "ora").await;
    let res = logout(&c, &app, "/auth/logout").await;
    assert_eq!(res.status(), 204);
    assert_revoked_exactly(&idp, &[&relayed]).await;
}

/// What each of the administrator's commands runs to end sessions (`crates/vestibule-cli`).
#[derive(Debug, Clone, Copy)]
enum AdminAction {
    /// `vestibule user disable NAME`.
    Disable,
    /// `vestibule user delete NAME`.
    Delete,
    /// `vestibule session revoke --user NAME`, and `vestibule user set-password NAME` (which
    /// ends the user's sessions the same way).
    RevokeUser,
    /// `vestibule session revoke ID`, the id from `vestibule session list`.
    RevokeOne,
    /// `vestibule session revoke --all`.
    RevokeAll,
}

#[tokio::test]
async fn the_administrators_commands_revoke_the_provider_tokens_and_wait_for_it() {
    // The server's own configuration, as a command would load it (same database).
    let mut raw = None;
    let Some((idp, app)) = relaying_app(|r| raw = Some(r.clone())).await else {
        return;
    };
    let config = raw.expect("configured").validate().expect("config");
    // A bystander whose session no command but `--all` may touch.
    let (bystander, bystander_relayed) = login_and_relay(&app, &idp, "bystander").await;
    let mut expected = 0;
    for (i, action) in [
        AdminAction::Disable,
        AdminAction::Delete,
        AdminAction::RevokeUser,
        AdminAction::RevokeOne,
        AdminAction::RevokeAll,
    ]
    .into_iter()
    .enumerate()
    {
        let (c, relayed) = login_and_relay(&app, &idp, &format!("admin{i}")).await;
        let user_id = me(&c, &app).await["user"]["id"].as_i64().expect("id");
        // Each command opens the database and builds its own session manager and relying
        // party, as the CLI process does.
        let db = vestibule::db::Database::connect(&config.database, config.store_timeout)
            .await
            .expect("the command's database");
        let (sessions, rp) = vestibule::server::admin_sessions(&config, &db).expect("sessions");
        let rp = rp.expect("providers are configured");
        match action {
            AdminAction::Disable => {
                vestibule::auth::disable_user(&db, &sessions, user_id)
                    .await
                    .expect("disable");
            }
            AdminAction::Delete => {
                vestibule::auth::delete_user(&db, &sessions, user_id)
                    .await
                    .expect("delete");
            }
            AdminAction::RevokeUser => {
                sessions
                    .end(vestibule::session::Revoke::User {
                        user_id,
                        keep: None,
                    })
                    .await
                    .expect("revoke --user");
            }
            AdminAction::RevokeOne => {
                let listed = vestibule::server::build_store(&config, &db)
                    .expect("store")
                    .0
                    .list_user(user_id)
                    .await
                    .expect("session list");
                assert_eq!(listed.len(), 1, "{action:?}");
                let id = vestibule::token::TokenHash::from_hex(&listed[0].key.to_hex())
                    .expect("the listed id");
                sessions
                    .end(vestibule::session::Revoke::One(&id))
                    .await
                    .expect("revoke ID");
            }
            AdminAction::RevokeAll => {
                let ids = vestibule::auth::UserStore::new(db.clone())
                    .list()
                    .await
                    .expect("users")
                    .into_iter()
                    .map(|u| u.id);
                sessions.end_all(ids).await.expect("revoke --all");
            }
        }
        assert!(
            rp.settle(Duration::from_secs(10)).await,
            "{action:?}: the revocations finished before the command would exit"
        );
        db.close().await;
        // Settled: the provider has served the requests already, no waiting here. Each ended
        // session sends its refresh token and its access token; `--all` also ends the
        // bystander's.
        expected += if matches!(action, AdminAction::RevokeAll) {
            4
        } else {
            2
        };
        let seen = revocations(&idp).await;
        assert_eq!(seen.len(), expected, "{action:?}: {seen:?}");
        assert!(seen.iter().all(|e| e["status"] == 200), "{seen:?}");
        assert!(
            !provider_accepts(&idp, &relayed).await,
            "{action:?}: the ended session's token was revoked"
        );
        let bystander_live = provider_accepts(&idp, &bystander_relayed).await;
        assert_eq!(
            bystander_live,
            !matches!(action, AdminAction::RevokeAll),
            "{action:?}: only --all ends the bystander's session"
        );
        assert_refused_soon(&c, &app, action).await;
    }
    assert_refused_soon(&bystander, &app, AdminAction::RevokeAll).await;
}

/// The running server refuses the browser `c`'s session within 5 s: a command's store is
/// another instance, whose commit the server's read cache notices within a second.
async fn assert_refused_soon(c: &Client, app: &TestApp, action: AdminAction) {
    for _ in 0..100 {
        let res = c.get(app.url("/auth/me")).send().await.expect("me");
        if res.status() == 401 {
            return;
        }
        assert_eq!(res.status(), 200, "{action:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{action:?}: the running server still accepts the ended session");
}
