//! Client authentication at the token endpoint (`oidc.provider.client_auth`), against
//! `oidc-provider`, which checks it as a real provider does: `private_key_jwt` (RFC 7523: the
//! signature against the registered keys, `iss`/`sub`/`aud`/`exp`, and every `jti` once only)
//! with RSA and EC keys made here, and `client_secret_post`. The provider logs how each token
//! request authenticated (`GET /_test/token_auth`), so the tests see what was sent.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use reqwest::Client;
use serde_json::{Value, json};
use vestibule::config::{RawConfig, SecretString};

use super::{
    Idp, browser, callback, echo_upstream, free_port, me, param, provider, provider_accepts,
    provider_login, vestibule,
};
use crate::support::{TestApp, assert_error};

/// A private key as PEM, and its public key as PEM (for the provider's registration).
struct TestKey {
    private_pem: String,
    public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A new RSA 2048 key, the private half in PKCS#8.
fn rsa_pkcs8() -> TestKey {
    let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    TestKey {
        private_pem: pem("PRIVATE KEY", k.as_der().expect("pkcs8").as_ref()),
        public_pem: pem(
            "PUBLIC KEY",
            k.public_key().as_der().expect("spki").as_ref(),
        ),
    }
}

/// A new EC P-256 key, the private half in SEC1 (`BEGIN EC PRIVATE KEY`, what `openssl
/// ecparam -genkey` writes).
fn p256_sec1() -> TestKey {
    let k = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .expect("p256");
    TestKey {
        private_pem: pem(
            "EC PRIVATE KEY",
            k.private_key().as_der().expect("sec1").as_ref(),
        ),
        public_pem: pem(
            "PUBLIC KEY",
            k.public_key().as_der().expect("spki").as_ref(),
        ),
    }
}

/// Writes `pem` into `dir`; its path.
fn key_file(dir: &tempfile::TempDir, name: &str, pem: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).expect("key file");
    path.display().to_string()
}

/// Provider `test` as `vestibule-jwt`, authenticating with `key_file` (and `kid`).
fn jwt_provider(raw: &mut RawConfig, issuer: &str, key_file: &str, kid: Option<&str>) {
    raw.oidc.provider.push(vestibule::auth::oidc::RawProvider {
        name: "test".into(),
        issuer: issuer.into(),
        client_id: "vestibule-jwt".into(),
        client_auth: "private_key_jwt".into(),
        private_key_file: Some(key_file.into()),
        key_id: kid.map(str::to_owned),
        ..Default::default()
    });
}

/// The provider's log of token requests, oldest first.
async fn token_requests(idp: &Idp) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_test/token_auth", idp.issuer))
        .await
        .expect("token log")
        .json()
        .await
        .expect("json");
    v["requests"].as_array().expect("requests").clone()
}

/// What the upstream received as `Authorization` for one call through `url`.
async fn relayed(c: &Client, url: String) -> String {
    let res = c.get(url).send().await.expect("api");
    assert_eq!(res.status(), 200, "the relayed call answered");
    res.text().await.expect("body")
}

/// Checks one logged private_key_jwt request to the token endpoint: the claims RFC 7523 and
/// Core 9 ask for, the audience the token endpoint.
fn assert_assertion(r: &Value, idp: &Idp, alg: &str, kid: Option<&str>) {
    assert_assertion_for(r, &format!("{}/token", idp.issuer), alg, kid);
}

/// The same, with the audience `aud`.
fn assert_assertion_for(r: &Value, aud: &str, alg: &str, kid: Option<&str>) {
    assert_eq!(r["method"], "private_key_jwt", "{r}");
    assert_eq!(r["client_id"], "vestibule-jwt", "{r}");
    assert_eq!(r["alg"], alg, "{r}");
    assert_eq!(r["kid"].as_str(), kid, "{r}");
    assert_eq!(r["iss"], "vestibule-jwt", "{r}");
    assert_eq!(r["sub"], "vestibule-jwt", "{r}");
    assert_eq!(r["aud"], aud, "the audience: {r}");
    let (iat, exp) = (
        r["iat"].as_i64().expect("iat"),
        r["exp"].as_i64().expect("exp"),
    );
    assert!(exp > iat && exp - iat <= 60, "short-lived: {r}");
    assert!(
        r["jti"].as_str().is_some_and(|j| j.len() >= 32),
        "a random jti: {r}"
    );
}

#[tokio::test]
async fn private_key_jwt_with_an_rsa_key_and_its_kid_logs_in_and_no_secret_is_sent() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let (key, other) = (rsa_pkcs8(), rsa_pkcs8());
    // Two keys registered: the provider picks the one the `kid` names.
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [cb],
        "jwt_client_keys": [
            {"pem": other.public_pem, "kid": "rsa-old"},
            {"pem": key.public_pem, "kid": "rsa-1"},
        ],
    }))
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let file = key_file(&dir, "client.pem", &key.private_pem);
    let app = vestibule(port, |raw| {
        jwt_provider(raw, &idp.issuer, &file, Some("rsa-1"));
    })
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &app, "jay", "/app").await;
    assert_eq!(callback(&c, &cb_url).await, app.url("/app"), "logged in");
    assert_eq!(me(&c, &app).await["user"]["username"], "jay");
    let log = token_requests(&idp).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["grant_type"], "authorization_code");
    assert_eq!(log[0]["status"], 200, "{log:?}");
    assert_assertion(&log[0], &idp, "RS256", Some("rsa-1"));
}

#[tokio::test]
async fn private_key_jwt_authenticates_the_revocation_of_the_tokens_at_an_oidc_logout() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let key = p256_sec1();
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [cb],
        "jwt_client_keys": [{"pem": key.public_pem, "kid": "ec-1"}],
    }))
    .await
    else {
        return;
    };
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = key_file(&dir, "client-ec.pem", &key.private_pem);
    let app = vestibule(port, |raw| {
        jwt_provider(raw, &idp.issuer, &file, Some("ec-1"));
        super::relay_api(raw, &upstream);
    })
    .await;
    let (c, token) = super::revocation::login_and_relay(&app, &idp, "mona").await;
    let res = super::revocation::logout(&c, &app, "/auth/oidc/logout").await;
    assert_eq!(res.status(), 200);
    let seen = super::revocation::until_revocations(&idp, 2).await;
    for (entry, hint) in seen.iter().zip(["refresh_token", "access_token"]) {
        assert_eq!(entry["token_type_hint"], hint, "{seen:?}");
        assert_eq!(entry["status"], 200, "{seen:?}");
        // The issuer, not the token endpoint: an assertion sent to another endpoint than the
        // one it names could be replayed there (revocation.rs says how).
        assert_assertion_for(entry, &idp.issuer, "ES256", Some("ec-1"));
    }
    assert_ne!(seen[0]["jti"], seen[1]["jti"], "one assertion per request");
    assert!(
        !provider_accepts(&idp, &token).await,
        "the relayed token was revoked"
    );
}

/// Access-token lifetime of the refresh tests. The relay refreshes when half the lifetime (at
/// most 30 s) is left, counted in whole seconds: with 2 s tokens, a login late in a second was
/// already due a few milliseconds later, so the first relayed call refreshed when the test
/// expected the login's token (seen failing once in a loaded full run). With 4 s, a token is
/// not due for at least 1 s after it was issued, and is due 2 s after.
const TTL_SECS: u64 = 4;
/// Long enough after a token was issued for it to be due (see [`TTL_SECS`]).
const UNTIL_DUE: std::time::Duration = std::time::Duration::from_millis(2500);

#[tokio::test]
async fn private_key_jwt_with_an_ec_sec1_key_refreshes_with_a_fresh_jti_every_time() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let key = p256_sec1();
    // Access tokens live TTL_SECS: see `TTL_SECS` for why not less.
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [cb],
        "access_token_ttl": TTL_SECS,
        "jwt_client_keys": [{"pem": key.public_pem}],
    }))
    .await
    else {
        return;
    };
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = key_file(&dir, "client-ec.pem", &key.private_pem);
    let app = vestibule(port, |raw| {
        jwt_provider(raw, &idp.issuer, &file, None);
        super::relay_api(raw, &upstream);
    })
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &app, "ece", "/").await;
    assert_eq!(callback(&c, &cb_url).await, app.url("/"));
    let mut token = relayed(&c, app.url("/api/x")).await;
    // Two refreshes: the provider refuses an assertion whose jti it has seen (invalid_client,
    // which would answer 502 here), so each one must carry a new one.
    for _ in 0..2 {
        tokio::time::sleep(UNTIL_DUE).await;
        let fresh = relayed(&c, app.url("/api/x")).await;
        assert_ne!(fresh, token, "refreshed");
        assert!(provider_accepts(&idp, &fresh).await, "a valid access token");
        token = fresh;
    }
    let log = token_requests(&idp).await;
    let grants: Vec<&str> = log
        .iter()
        .map(|r| r["grant_type"].as_str().expect("grant"))
        .collect();
    assert_eq!(
        grants,
        ["authorization_code", "refresh_token", "refresh_token"],
        "{log:?}"
    );
    let mut jtis = std::collections::HashSet::new();
    for r in &log {
        assert_eq!(r["status"], 200, "{r}");
        assert_assertion(r, &idp, "ES256", None);
        assert!(
            jtis.insert(r["jti"].as_str().expect("jti").to_owned()),
            "{log:?}"
        );
    }
}

#[tokio::test]
async fn a_key_the_provider_does_not_hold_is_refused_with_oidc_client_rejected() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let (registered, wrong) = (rsa_pkcs8(), rsa_pkcs8());
    let Some(idp) = Idp::start(json!({
        "redirect_uris": [cb],
        "jwt_client_keys": [{"pem": registered.public_pem, "kid": "k1"}],
    }))
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    // The registered kid, another key: only the signature tells them apart.
    let file = key_file(&dir, "wrong.pem", &wrong.private_pem);
    let app = vestibule(port, |raw| {
        jwt_provider(raw, &idp.issuer, &file, Some("k1"));
    })
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &app, "mallory", "/app").await;
    let to = callback(&c, &cb_url).await;
    assert!(to.starts_with(&app.url("/app")), "{to}");
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("oidc_client_rejected")
    );
    let res = c.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "not logged in");
    let log = token_requests(&idp).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], 401, "{log:?}");
    assert_eq!(log[0]["error"], "invalid_client", "{log:?}");
    assert_assertion(&log[0], &idp, "RS256", Some("k1"));
}

#[tokio::test]
async fn client_secret_post_logs_in_and_a_wrong_secret_is_refused_with_oidc_client_rejected() {
    let ports = [free_port(), free_port(), free_port()];
    let cbs: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}/auth/oidc/test/callback"))
        .collect();
    let Some(idp) = Idp::start(json!({"redirect_uris": cbs})).await else {
        return;
    };
    let client = |id: &str, secret: &str, method: &str| {
        let (issuer, id, secret, method) = (
            idp.issuer.clone(),
            id.to_owned(),
            secret.to_owned(),
            method.to_owned(),
        );
        move |raw: &mut RawConfig| {
            provider(raw, "test", &issuer, &id, &secret);
            raw.oidc.provider[0].client_auth = method;
        }
    };
    let good = vestibule(
        ports[0],
        client(
            "vestibule-post",
            &idp.post_client_secret,
            "client_secret_post",
        ),
    )
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &good, "posty", "/").await;
    assert_eq!(callback(&c, &cb_url).await, good.url("/"), "logged in");
    let log = token_requests(&idp).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["method"], "client_secret_post", "{log:?}");
    assert_eq!(log[0]["client_id"], "vestibule-post", "{log:?}");
    assert_eq!(log[0]["status"], 200, "{log:?}");

    // A wrong secret, in the body and (the default method) in the header: the provider answers
    // invalid_client, which is the operator's configuration, not a bad code.
    // (oidc-provider takes either secret method from a client registered for one of them, so
    // a method mismatch between the two is not refused there.)
    for (port, tweak, method) in [
        (
            ports[1],
            client(
                "vestibule-post",
                "not-the-secret-0123456789",
                "client_secret_post",
            ),
            "client_secret_post",
        ),
        (
            ports[2],
            client(
                "vestibule",
                "not-the-secret-0123456789",
                "client_secret_basic",
            ),
            "client_secret_basic",
        ),
    ] {
        let app = vestibule(port, tweak).await;
        let c = browser();
        let cb_url = provider_login(&c, &app, "posty", "/").await;
        let to = callback(&c, &cb_url).await;
        assert_eq!(
            param(&to, "oidc_error").as_deref(),
            Some("oidc_client_rejected"),
            "{method}: {to}"
        );
        let last = token_requests(&idp).await.pop().expect("logged");
        assert_eq!(last["method"], method, "{last}");
        assert_eq!(last["error"], "invalid_client", "{last}");
    }
}

/// Two instances of one deployment on one SQLite database (users and sessions): `good`
/// authenticates with the registered key, `bad` with another one (a misconfigured instance in a
/// rolling deploy). Access tokens live `ttl` seconds, refresh tokens `refresh_ttl`.
async fn good_and_bad_instances(ttl: u64, refresh_ttl: u64) -> Option<(TestApp, TestApp, Idp)> {
    let (port_good, port_bad) = (free_port(), free_port());
    let cb = format!("http://127.0.0.1:{port_good}/auth/oidc/test/callback");
    let (key, wrong) = (p256_sec1(), p256_sec1());
    let idp = Idp::start(json!({
        "redirect_uris": [cb],
        "access_token_ttl": ttl,
        "refresh_token_ttl": refresh_ttl,
        "jwt_client_keys": [{"pem": key.public_pem, "kid": "ec-1"}],
    }))
    .await?;
    let upstream = echo_upstream().await;
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let good_file = key_file(&dir, "good.pem", &key.private_pem);
    let bad_file = key_file(&dir, "bad.pem", &wrong.private_pem);
    let setup = |raw: &mut RawConfig, port: u16, file: &str| {
        raw.listen = format!("127.0.0.1:{port}");
        raw.public_url = Some(format!("http://127.0.0.1:{port_good}"));
        raw.secret_key = Some(SecretString(
            "an-oidc-test-secret-key-of-32-chars-or-more".into(),
        ));
        raw.oidc.signup = true;
        raw.session.store = vestibule::config::RawStore::One("database".into());
        jwt_provider(raw, &idp.issuer, file, Some("ec-1"));
        super::relay_api(raw, &upstream);
    };
    let good = TestApp::spawn_in(dir.clone(), |raw| setup(raw, port_good, &good_file)).await;
    let bad = TestApp::spawn_in(dir.clone(), |raw| setup(raw, port_bad, &bad_file)).await;
    Some((good, bad, idp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_refused_with_invalid_client_relays_the_valid_token_asks_again_later_then_answers_502_and_keeps_the_session()
 {
    // 6 s tokens, due with 3 s left (whole seconds): due from 3 s after the login, expired from
    // 6 s. Checked at 3.2 s, the token is still valid unless the login took 1.8 s.
    const TTL: u64 = 6;
    let Some((good, bad, idp)) = good_and_bad_instances(TTL, 3600).await else {
        return;
    };
    let c = browser();
    let cb_url = provider_login(&c, &good, "rolf", "/").await;
    assert_eq!(callback(&c, &cb_url).await, good.url("/"));
    let first = relayed(&c, bad.url("/api/x")).await;
    assert!(
        first.starts_with("Bearer "),
        "the session serves on both: {first}"
    );

    // Due: the misconfigured instance refreshes and the provider refuses it, but the access
    // token has not expired yet: the request goes on with it, and the next ones too, without
    // asking the provider again for a moment (each would wait for its answer).
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let before = token_requests(&idp).await.len();
    for _ in 0..3 {
        assert_eq!(relayed(&c, bad.url("/api/x")).await, first, "still valid");
    }
    let log = token_requests(&idp).await;
    assert_eq!(
        log.len(),
        before + 1,
        "one refresh for three requests: {log:?}"
    );
    let last = log.last().expect("logged");
    assert_eq!(last["grant_type"], "refresh_token", "{last}");
    assert_eq!(last["error"], "invalid_client", "{last}");

    // Expired: nothing valid to relay, and the operator's error is named.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    let res = c.get(bad.url("/api/x")).send().await.expect("api");
    assert_error(res, 502, "oidc_client_rejected").await;
    let last = token_requests(&idp).await.pop().expect("logged");
    assert_eq!(last["grant_type"], "refresh_token", "{last}");
    assert_eq!(last["error"], "invalid_client", "{last}");
    // The operator's mistake costs the user nothing: still logged in on both instances, and the
    // refresh token (never accepted from `bad`) still works from `good`.
    assert_eq!(me(&c, &bad).await["user"]["username"], "rolf");
    assert_eq!(me(&c, &good).await["user"]["username"], "rolf");
    let refreshed = relayed(&c, good.url("/api/x")).await;
    assert_ne!(refreshed, first, "refreshed by the good instance");
    assert!(provider_accepts(&idp, &refreshed).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_refused_with_invalid_grant_still_ends_the_session() {
    // Refresh tokens live 1 s: by the time the access token is due, the refresh token has
    // expired and the provider answers invalid_grant.
    let Some((good, _bad, idp)) = good_and_bad_instances(3, 1).await else {
        return;
    };
    let c = browser();
    let cb_url = provider_login(&c, &good, "gina", "/").await;
    assert_eq!(callback(&c, &cb_url).await, good.url("/"));
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let res = c.get(good.url("/api/x")).send().await.expect("api");
    assert_error(res, 401, "session_expired").await;
    let last = token_requests(&idp).await.pop().expect("logged");
    assert_eq!(last["error"], "invalid_grant", "{last}");
    let res = c.get(good.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "logged out");
}
