//! Logging out with an OpenID provider (`auth::oidc::logout`): back-channel logout tokens —
//! forged ones refused, the real provider's accepted, on every instance — and RP-initiated
//! logout against the real provider (`oidc-provider`, `e2e/oidc/provider.mjs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use openidconnect::PrivateSigningKey;
use openidconnect::core::CoreJwsSigningAlgorithm;
use reqwest::Client;
use serde_json::{Value, json};
use vestibule::config::RawStore;

use crate::oidc::{
    FAKE_SECRET, Idp, absolute, b64, browser, callback, chrono_now, free_port, location, me, param,
    provider, provider_login, rsa_key, vestibule,
};
use crate::services::PgSchema;
use crate::support::{TestApp, assert_error};

/// A provider made in the test whose ID tokens carry a `sid` (the next login's), for logout
/// tokens no certified provider would sign. Its `revocation_endpoint` answers after half a
/// second and counts the revocations it finished.
#[derive(Clone)]
struct SidIdp {
    issuer: String,
    nonce: Arc<Mutex<String>>,
    sid: Arc<Mutex<String>>,
    revoked: Arc<std::sync::atomic::AtomicUsize>,
}

fn sign(header: &Value, claims: &Value) -> String {
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = rsa_key()
        .sign(
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            msg.as_bytes(),
        )
        .expect("signed");
    format!("{msg}.{}", b64(&sig))
}

async fn sid_idp() -> SidIdp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let idp = SidIdp {
        issuer: issuer.clone(),
        nonce: Arc::new(Mutex::new(String::new())),
        sid: Arc::new(Mutex::new(String::new())),
        revoked: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let jwks =
        json!({"keys": [serde_json::to_value(rsa_key().as_verification_key()).expect("jwk")]});
    let i = idp.clone();
    let revoked = idp.revoked.clone();
    let router = Router::new()
        .route(
            "/revoke",
            post(move || {
                let revoked = revoked.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    revoked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || std::future::ready(axum::Json(discovery.clone()))),
        )
        .route(
            "/jwks",
            get(move || std::future::ready(axum::Json(jwks.clone()))),
        )
        .route(
            "/token",
            post(move || {
                let now = chrono_now();
                let token = sign(
                    &json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
                    &json!({
                        "iss": i.issuer, "sub": "mallory", "aud": "vestibule",
                        "exp": now + 300, "iat": now,
                        "nonce": *i.nonce.lock().expect("lock"),
                        "sid": *i.sid.lock().expect("lock"),
                        "preferred_username": "mallory",
                    }),
                );
                std::future::ready(axum::Json(json!({
                    "access_token": "fake-access-token",
                    "token_type": "Bearer",
                    "expires_in": 60,
                    "id_token": token,
                })))
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    idp
}

/// The provider made in the test and Vestibule using it as `fake`.
async fn sid_app() -> (SidIdp, TestApp) {
    let idp = sid_idp().await;
    let app = vestibule(free_port(), |raw| {
        provider(raw, "fake", &idp.issuer, "vestibule", FAKE_SECRET);
    })
    .await;
    (idp, app)
}

/// A browser logged in as mallory through `idp`, in the provider session `sid`.
async fn login_with_sid(app: &TestApp, idp: &SidIdp, sid: &str) -> Client {
    let c = browser();
    let res = c
        .get(app.url("/auth/oidc/fake/start?return_to=/app"))
        .send()
        .await
        .expect("start");
    assert_eq!(res.status(), 303);
    let authorize = location(&res);
    *idp.nonce.lock().expect("lock") = param(&authorize, "nonce").expect("nonce");
    *idp.sid.lock().expect("lock") = sid.to_owned();
    let state = param(&authorize, "state").expect("state");
    let to = callback(
        &c,
        &app.url(&format!("/auth/oidc/fake/callback?code=c0de&state={state}")),
    )
    .await;
    assert_eq!(to, app.url("/app"), "logged in");
    c
}

fn logout_claims(idp: &SidIdp, jti: &str) -> Value {
    json!({
        "iss": idp.issuer, "aud": "vestibule", "iat": chrono_now(), "jti": jti,
        "sub": "mallory", "sid": "sid-b",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    })
}

fn logout_header() -> Value {
    json!({"alg": "RS256", "kid": "k1", "typ": "logout+jwt"})
}

async fn send_logout(app: &TestApp, token: &str) -> reqwest::Response {
    Client::new()
        .post(app.url("/auth/oidc/fake/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("logout_token", token)]))
        .send()
        .await
        .expect("backchannel")
}

async fn status_of_me(c: &Client, app: &TestApp) -> u16 {
    c.get(app.url("/auth/me"))
        .send()
        .await
        .expect("me")
        .status()
        .as_u16()
}

#[tokio::test]
async fn logout_tokens_that_break_a_rule_are_refused_and_a_valid_one_ends_only_its_sid() {
    let (idp, app) = sid_app().await;
    let a = login_with_sid(&app, &idp, "sid-a").await;
    let b = login_with_sid(&app, &idp, "sid-b").await;

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = logout_claims(&idp, &format!("jti-{}", rand_hex()));
        f(&mut c);
        c
    };
    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"logout+jwt"}"#),
                b64(with(&|_| {}).to_string().as_bytes())
            ),
        ),
        ("wrong signature", {
            let good = sign(&logout_header(), &with(&|_| {}));
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            parts[1] = b64(with(&|c| c["sid"] = json!("sid-a")).to_string().as_bytes());
            parts.join(".")
        }),
        ("HS256 with the client secret, not configured", {
            use hmac::{KeyInit, Mac};
            let header = b64(br#"{"alg":"HS256","typ":"logout+jwt"}"#);
            let body = b64(with(&|_| {}).to_string().as_bytes());
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(FAKE_SECRET.as_bytes()).expect("key");
            mac.update(format!("{header}.{body}").as_bytes());
            format!("{header}.{body}.{}", b64(&mac.finalize().into_bytes()))
        }),
        (
            "unknown kid",
            sign(
                &json!({"alg": "RS256", "kid": "k-unknown", "typ": "logout+jwt"}),
                &with(&|_| {}),
            ),
        ),
        (
            "wrong aud",
            sign(&logout_header(), &with(&|c| c["aud"] = json!("other"))),
        ),
        (
            "another issuer",
            sign(
                &logout_header(),
                &with(&|c| c["iss"] = json!("https://attacker.example")),
            ),
        ),
        (
            "a nonce (an ID token)",
            sign(&logout_header(), &with(&|c| c["nonce"] = json!("n"))),
        ),
        (
            "no events",
            sign(
                &logout_header(),
                &with(&|c| {
                    c.as_object_mut().expect("object").remove("events");
                }),
            ),
        ),
        (
            "another event",
            sign(
                &logout_header(),
                &with(&|c| c["events"] = json!({"urn:other": {}})),
            ),
        ),
        (
            "neither sid nor sub",
            sign(
                &logout_header(),
                &with(&|c| {
                    let o = c.as_object_mut().expect("object");
                    o.remove("sid");
                    o.remove("sub");
                }),
            ),
        ),
        (
            "iat an hour old",
            sign(
                &logout_header(),
                &with(&|c| c["iat"] = json!(chrono_now() - 3600)),
            ),
        ),
        (
            "no jti",
            sign(
                &logout_header(),
                &with(&|c| {
                    c.as_object_mut().expect("object").remove("jti");
                }),
            ),
        ),
        (
            "an ID token's type",
            sign(
                &json!({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}),
                &with(&|_| {}),
            ),
        ),
    ];
    for (what, token) in cases.drain(..) {
        let res = send_logout(&app, &token).await;
        assert_eq!(
            res.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}"
        );
        let body = assert_error(res, 400, "oidc_logout_token_invalid").await;
        assert!(body["message"].is_string(), "{what}: {body}");
        assert_eq!(status_of_me(&a, &app).await, 200, "{what} ended nothing");
        assert_eq!(status_of_me(&b, &app).await, 200, "{what} ended nothing");
    }
    // No token, or not a form.
    let res = Client::new()
        .post(app.url("/auth/oidc/fake/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("other", "x")]))
        .send()
        .await
        .expect("post");
    assert_error(res, 400, "oidc_logout_token_invalid").await;
    let res = Client::new()
        .post(app.url("/auth/oidc/fake/backchannel-logout"))
        .json(&json!({"logout_token": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 415);
    let res = send_logout(&app, "x").await;
    assert_error(res, 400, "oidc_logout_token_invalid").await;

    // The valid token for sid-b: b's session ends, a's (another provider session) stays.
    let valid = sign(&logout_header(), &logout_claims(&idp, "jti-valid"));
    let res = send_logout(&app, &valid).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(status_of_me(&b, &app).await, 401, "sid-b ended");
    assert_eq!(
        status_of_me(&a, &app).await,
        200,
        "sid-a is another session"
    );

    // Replayed: refused (and a fresh login in sid-b is not ended by it).
    let b2 = login_with_sid(&app, &idp, "sid-b").await;
    let res = send_logout(&app, &valid).await;
    let body = assert_error(res, 400, "oidc_logout_token_invalid").await;
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("jti")),
        "{body}"
    );
    assert_eq!(
        status_of_me(&b2, &app).await,
        200,
        "the replay ended nothing"
    );

    // A sid nobody has: 200, nothing ends.
    let other = sign(
        &logout_header(),
        &json!({
            "iss": idp.issuer, "aud": ["vestibule", "x"], "iat": chrono_now(), "jti": "jti-other",
            "sid": "sid-unknown",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    );
    assert_eq!(send_logout(&app, &other).await.status(), 200);
    assert_eq!(status_of_me(&a, &app).await, 200);
    assert_eq!(status_of_me(&b2, &app).await, 200);

    // `sid` alone (no `sub`): found through the index.
    let by_sid = sign(
        &logout_header(),
        &json!({
            "iss": idp.issuer, "aud": "vestibule", "iat": chrono_now(), "jti": "jti-sid-only",
            "sid": "sid-a",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    );
    assert_eq!(send_logout(&app, &by_sid).await.status(), 200);
    assert_eq!(status_of_me(&a, &app).await, 401, "sid-a ended");
    assert_eq!(status_of_me(&b2, &app).await, 200);

    // `sub` alone: every session of the user.
    let a2 = login_with_sid(&app, &idp, "sid-a").await;
    let by_sub = sign(
        &logout_header(),
        &json!({
            "iss": idp.issuer, "aud": "vestibule", "iat": chrono_now(), "jti": "jti-sub",
            "sub": "mallory",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }),
    );
    assert_eq!(send_logout(&app, &by_sub).await.status(), 200);
    assert_eq!(status_of_me(&a2, &app).await, 401);
    assert_eq!(status_of_me(&b2, &app).await, 401);

    // Unknown provider.
    let res = Client::new()
        .post(app.url("/auth/oidc/nope/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("logout_token", valid.as_str())]))
        .send()
        .await
        .expect("post");
    assert_error(res, 404, "oidc_provider_unknown").await;
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn rand_hex() -> String {
    crate::services::random_prefix()[15..31].to_owned()
}

/// The provider's logout confirmation (`/session/end` → its form → confirmed): follows
/// redirects from `url` in `c` until a page with the confirmation form, posts it, and follows
/// the provider's redirects; the last URL reached.
async fn confirm_provider_logout(c: &Client, url: &str) -> String {
    let mut url = url.to_owned();
    let html = loop {
        let res = c.get(&url).send().await.expect("end_session");
        if res.status().is_redirection() {
            url = absolute(&url, &location(&res));
            continue;
        }
        assert_eq!(res.status(), 200, "{url}");
        break res.text().await.expect("page");
    };
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("a logout form: {html}"))
        .to_owned();
    let xsrf = html
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("xsrf: {html}"))
        .to_owned();
    let mut res = c
        .post(absolute(&url, &action))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("xsrf", xsrf.as_str()), ("logout", "yes")]))
        .send()
        .await
        .expect("confirm");
    let mut at = absolute(&url, &action);
    for _ in 0..10 {
        if !res.status().is_redirection() {
            break;
        }
        at = absolute(&at, &location(&res));
        if !at.starts_with(&url[..=url.find("/session").unwrap_or(0)]) {
            // Back at the relying party: not followed.
            return at;
        }
        res = c.get(&at).send().await.expect("follow");
    }
    at
}

/// Waits (bounded) until `/auth/me` answers `status` for `c`: the provider's back-channel call
/// may still be under way when its redirect arrives.
async fn until_me(c: &Client, app: &TestApp, status: u16) -> u16 {
    let mut last = 0;
    for _ in 0..50 {
        last = status_of_me(c, app).await;
        if last == status {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Whether `c` is still signed in at the provider: a new login from Vestibule comes straight
/// back to the callback without the login form.
async fn signed_in_at_provider(c: &Client, app: &TestApp) -> bool {
    let res = c
        .get(app.url("/auth/oidc/test/start?return_to=/"))
        .send()
        .await
        .expect("start");
    crate::oidc::follow_to_callback(c, location(&res))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_logout_at_the_provider_ends_the_session_through_the_back_channel() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [format!("{base}/auth/oidc/test/callback")],
        "backchannel_logout_uri": format!("{base}/auth/oidc/test/backchannel-logout"),
    }))
    .await
    else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    // Two browsers, two provider sessions of the same user.
    let c1 = browser();
    let cb = provider_login(&c1, &app, "grace", "/").await;
    assert_eq!(callback(&c1, &cb).await, app.url("/"));
    let c2 = browser();
    let cb = provider_login(&c2, &app, "grace", "/").await;
    assert_eq!(callback(&c2, &cb).await, app.url("/"));
    let user_id = me(&c1, &app).await["user"]["id"].as_i64().expect("id");
    let records = app
        .state
        .sessions
        .store()
        .list_user(user_id)
        .await
        .expect("records");
    assert!(
        records.iter().all(|r| r.data.contains_key("oidc.sid")),
        "the provider's sid is kept with each session"
    );

    // The user logs out at the provider, in browser 1 (no Vestibule call at all).
    confirm_provider_logout(&c1, &format!("{}/session/end", idp.issuer)).await;
    assert_eq!(
        until_me(&c1, &app, 401).await,
        401,
        "the provider's back-channel call ended browser 1's session"
    );
    assert_eq!(
        status_of_me(&c2, &app).await,
        200,
        "another provider session (sid) stays"
    );
    // The ended session's provider tokens are revoked like at any other end (RFC 7009): its
    // refresh token, then its access token; browser 2's are not.
    let seen = crate::oidc::revocation::until_revocations(&idp, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen_after = crate::oidc::revocation::revocations(&idp).await;
    assert_eq!(seen_after.len(), 2, "only browser 1's: {seen_after:?}");
    let hints: Vec<&Value> = seen.iter().map(|e| &e["token_type_hint"]).collect();
    assert_eq!(
        hints,
        [&json!("refresh_token"), &json!("access_token")],
        "{seen:?}"
    );
    assert!(seen.iter().all(|e| e["status"] == 200), "{seen:?}");
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_here_and_at_the_provider() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [format!("{base}/auth/oidc/test/callback")],
        "post_logout_redirect_uris": [format!("{base}/goodbye")],
        "backchannel_logout_uri": format!("{base}/auth/oidc/test/backchannel-logout"),
    }))
    .await
    else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let c = browser();
    let cb = provider_login(&c, &app, "heidi", "/").await;
    assert_eq!(callback(&c, &cb).await, app.url("/"));
    let csrf = me(&c, &app).await["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    // A foreign return_to is refused before anything ends.
    let res = c
        .post(app.url("/auth/oidc/logout"))
        .header("x-csrf-token", &csrf)
        .header("origin", &base)
        .json(&json!({"return_to": "https://attacker.example/"}))
        .send()
        .await
        .expect("logout");
    assert_error(res, 400, "oidc_return_to_refused").await;
    assert_eq!(status_of_me(&c, &app).await, 200);

    let res = c
        .post(app.url("/auth/oidc/logout"))
        .header("x-csrf-token", &csrf)
        .header("origin", &base)
        .json(&json!({"return_to": "/goodbye"}))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let url = body["end_session_url"].as_str().expect("end_session_url");
    assert!(url.starts_with(&idp.issuer), "{url}");
    assert!(param(url, "id_token_hint").is_some(), "{url}");
    assert_eq!(param(url, "client_id").as_deref(), Some("vestibule"));
    assert_eq!(
        param(url, "post_logout_redirect_uri"),
        Some(format!("{base}/goodbye"))
    );
    assert_eq!(
        status_of_me(&c, &app).await,
        401,
        "the Vestibule session ended at once"
    );
    assert!(
        signed_in_at_provider(&c, &app).await,
        "not yet at the provider"
    );

    // The browser follows it: the provider's session ends and it comes back to return_to.
    let back = confirm_provider_logout(&c, url).await;
    assert!(back.starts_with(&format!("{base}/goodbye")), "{back}");
    assert!(
        !signed_in_at_provider(&c, &app).await,
        "the provider's session ended"
    );

    // Logged out already, or never through a provider: no URL.
    let anon = browser();
    let res = anon
        .post(app.url("/auth/oidc/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.expect("json")["end_session_url"],
        Value::Null
    );
}

#[tokio::test]
async fn a_back_channel_logout_ends_the_session_on_every_instance() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let (pa, pb) = (free_port(), free_port());
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [format!("http://127.0.0.1:{pa}/auth/oidc/test/callback")],
        // The provider calls instance B; the login happened on A.
        "backchannel_logout_uri": format!("http://127.0.0.1:{pb}/auth/oidc/test/backchannel-logout"),
    }))
    .await
    else {
        return;
    };
    let shared = |raw: &mut vestibule::config::RawConfig| {
        raw.database_url = schema.url.clone();
        raw.session.store = RawStore::One("database".into());
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    };
    let a = vestibule(pa, shared).await;
    let b = vestibule(pb, shared).await;
    let c = browser();
    let cb = provider_login(&c, &a, "ivan", "/").await;
    assert_eq!(callback(&c, &cb).await, a.url("/"));
    // The same cookie works on both instances (one store).
    assert_eq!(status_of_me(&c, &a).await, 200);
    assert_eq!(status_of_me(&c, &b).await, 200);

    confirm_provider_logout(&c, &format!("{}/session/end", idp.issuer)).await;
    assert_eq!(until_me(&c, &b, 401).await, 401, "dead on B (called)");
    assert_eq!(status_of_me(&c, &a).await, 401, "dead on A too");
}

#[tokio::test]
async fn a_stopping_server_waits_for_the_provider_token_revocations_under_way() {
    let (idp, app) = sid_app().await;
    let c = login_with_sid(&app, &idp, "sid-stop").await;
    let res = crate::oidc::revocation::logout(&c, &app, "/auth/logout").await;
    assert_eq!(res.status(), 204, "answered before the provider did");
    let revoked = idp.revoked.clone();
    assert_eq!(
        revoked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the revocation takes the provider half a second"
    );
    // Stopped at once: the server still waits for the revocation it started (the session's
    // access token; this provider issues no refresh token).
    app.stop().await;
    assert_eq!(revoked.load(std::sync::atomic::Ordering::SeqCst), 1);
}
