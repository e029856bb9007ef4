//! Sign-in through OpenID Connect (`auth::oidc`), against a real, OpenID Certified provider
//! (`oidc-provider` from npm, started by `e2e/oidc/provider.mjs` on loopback, installed by the
//! root `npm ci`), and against a provider made in the test for the ID tokens no real provider
//! issues (`alg: none`, HMAC with the client secret, expired, another login's nonce, another
//! issuer).

use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use openidconnect::core::{
    CoreHmacKey, CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, IssuerUrl, JsonWebKeyId, Nonce, PrivateSigningKey,
    StandardClaims, SubjectIdentifier,
};
use reqwest::{Client, redirect};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use vestibule::config::RawConfig;
use vestibule::config::SecretString;

use crate::services::REQUIRE_VAR;
use crate::support::{TestApp, assert_error};

const RSA_PEM: &str = include_str!("fixtures/oidc-test-rsa.pem");

pub(crate) fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The repository root (where `node_modules/` and `e2e/` are).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `oidc-provider` running on loopback; killed on drop.
pub(crate) struct Idp {
    pub(crate) issuer: String,
    pub(crate) client_secret: String,
    /// `vestibule-post`'s secret (client_secret_post).
    pub(crate) post_client_secret: String,
    child: std::process::Child,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// Starts the provider with `vestibule`'s callback registered; `None` (after saying why)
    /// when node or the npm package is missing, which `VESTIBULE_REQUIRE_SERVICES=1` makes a
    /// failure.
    pub(crate) async fn start(options: Value) -> Option<Self> {
        let root = repo_root();
        if !root
            .join("node_modules/oidc-provider/package.json")
            .exists()
        {
            let why = "node_modules/oidc-provider is missing: run `npm ci` at the repository root (scripts/test.sh does)";
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{why} ({REQUIRE_VAR}=1)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let mut child = std::process::Command::new("node")
            .arg("e2e/oidc/provider.mjs")
            .arg(options.to_string())
            .current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout");
        // One line, printed once it listens (a blocking read of a local pipe, at start only).
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("reader")
        .expect("provider's first line");
        let info: Value = serde_json::from_str(&line).expect("provider's JSON line");
        Some(Self {
            issuer: info["issuer"].as_str().expect("issuer").to_owned(),
            client_secret: info["client_secret"].as_str().expect("secret").to_owned(),
            post_client_secret: info["post_client_secret"]
                .as_str()
                .expect("post secret")
                .to_owned(),
            child,
        })
    }
}

pub(crate) fn provider(
    raw: &mut RawConfig,
    name: &str,
    issuer: &str,
    client_id: &str,
    secret: &str,
) {
    raw.oidc.provider.push(vestibule::auth::oidc::RawProvider {
        name: name.into(),
        issuer: issuer.into(),
        client_id: client_id.into(),
        client_secret: Some(SecretString(secret.into())),
        ..Default::default()
    });
}

/// Vestibule on `port` (known before the provider starts, for its registered callback).
pub(crate) async fn vestibule(port: u16, tweak: impl FnOnce(&mut RawConfig)) -> TestApp {
    TestApp::spawn_with(|raw| {
        raw.listen = format!("127.0.0.1:{port}");
        raw.public_url = Some(format!("http://127.0.0.1:{port}"));
        raw.secret_key = Some(SecretString(
            "an-oidc-test-secret-key-of-32-chars-or-more".into(),
        ));
        raw.oidc.signup = true;
        tweak(raw);
    })
    .await
}

/// A browser: a cookie jar, redirects followed by hand.
pub(crate) fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

pub(crate) fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("a redirect, got {}", res.status()))
}

/// `url` made absolute against `base`.
pub(crate) fn absolute(base: &str, url: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(url))
        .expect("url")
        .to_string()
}

pub(crate) fn param(url: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Follows redirects from `url` until one points at Vestibule's callback (returned, not
/// followed) or a page answers (then the HTML and its URL).
pub(crate) async fn follow_to_callback(
    c: &Client,
    mut url: String,
) -> Result<String, (String, String)> {
    for _ in 0..20 {
        if url.contains("/auth/oidc/") && url.contains("/callback") {
            return Ok(url);
        }
        let res = c.get(&url).send().await.expect("request");
        if res.status().is_redirection() {
            url = absolute(&url, &location(&res));
            continue;
        }
        let page = res.text().await.expect("body");
        return Err((url, page));
    }
    panic!("too many redirects");
}

/// The provider's callback URL after `username` signs in at the provider, from Vestibule's
/// start with `return_to`.
pub(crate) async fn provider_login(
    c: &Client,
    app: &TestApp,
    username: &str,
    return_to: &str,
) -> String {
    let res = c
        .get(app.url(&format!("/auth/oidc/test/start?return_to={return_to}")))
        .send()
        .await
        .expect("start");
    assert_eq!(res.status(), 303, "start redirects to the provider");
    let authorize = location(&res);
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "PKCE: {authorize}"
    );
    assert!(authorize.contains("nonce="), "nonce: {authorize}");
    match follow_to_callback(c, authorize).await {
        Ok(callback) => callback,
        Err((page_url, html)) => {
            // The provider's login form.
            assert!(html.contains("name=\"login\""), "login page: {html}");
            let action = html
                .split("action=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("form action");
            let res = c
                .post(absolute(&page_url, action))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("login={}", url_escape(username)))
                .send()
                .await
                .expect("login post");
            assert!(res.status().is_redirection(), "{}", res.status());
            let next = absolute(&page_url, &location(&res));
            follow_to_callback(c, next)
                .await
                .expect("back to Vestibule")
        }
    }
}

/// Completes the callback; the redirect's target.
pub(crate) async fn callback(c: &Client, url: &str) -> String {
    let res = c.get(url).send().await.expect("callback");
    assert_eq!(res.status(), 303, "callback redirects");
    location(&res)
}

pub(crate) async fn me(c: &Client, app: &TestApp) -> Value {
    let res = c.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

#[tokio::test]
async fn a_provider_login_creates_the_user_logs_in_and_keeps_the_tokens_on_the_server() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &app, "alice", "/app").await;
    assert!(param(&cb_url, "iss").is_some(), "RFC 9207 iss: {cb_url}");
    let res = c.get(&cb_url).send().await.expect("callback");
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.starts_with("vestibule_device="))),
        "the device cookie of the login flow"
    );
    let to = location(&res);
    assert_eq!(to, app.url("/app"));
    let who = me(&c, &app).await;
    assert_eq!(who["user"]["username"], "alice");
    let user_id = who["user"]["id"].as_i64().expect("id");

    // The provider's tokens are in the session record, sealed (secret_key is set); nothing the
    // browser received holds them.
    let records = app
        .state
        .sessions
        .store()
        .list_user(user_id)
        .await
        .expect("records");
    assert_eq!(records.len(), 1);
    let sealed = records[0].data["oidc.tokens"]
        .as_str()
        .expect("tokens kept");
    assert!(sealed.starts_with("v1:"), "sealed at rest");
    assert!(!sealed.contains("access_token"));

    // The same identity again (a fresh browser): the same user, by (issuer, subject).
    let c2 = browser();
    let cb2 = provider_login(&c2, &app, "alice", "/").await;
    assert_eq!(callback(&c2, &cb2).await, app.url("/"));
    assert_eq!(me(&c2, &app).await["user"]["id"].as_i64(), Some(user_id));

    // Replaying the callback (code and state) in the browser that used it: the flow is gone.
    let res = c.get(&cb_url).send().await.expect("replay");
    assert_error(res, 400, "oidc_state_mismatch").await;
    assert_eq!(
        me(&c, &app).await["user"]["id"].as_i64(),
        Some(user_id),
        "still logged in"
    );
}

#[tokio::test]
async fn without_oidc_signup_an_unknown_identity_is_refused_with_a_code() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        raw.oidc.signup = false;
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &app, "bob", "/app").await;
    let to = callback(&c, &cb_url).await;
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("signup_disabled"),
        "{to}"
    );
    let res = c.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "nobody is logged in");
}

#[tokio::test]
async fn wrong_state_replayed_code_foreign_issuer_and_another_clients_code_are_refused() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let c = browser();

    // Wrong state: the flow started in this session, the state is not its.
    let cb_url = provider_login(&c, &app, "carol", "/app").await;
    let forged = cb_url.replace(
        &format!("state={}", param(&cb_url, "state").expect("state")),
        "state=forged",
    );
    let to = callback(&c, &forged).await;
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("oidc_state_mismatch"),
        "{to}"
    );
    assert!(to.starts_with(&app.url("/app")), "back to return_to: {to}");
    // And the flow is spent: the genuine callback no longer works either (single use).
    let res = c.get(&cb_url).send().await.expect("callback");
    assert_error(res, 400, "oidc_state_mismatch").await;

    // No flow in this browser at all: JSON, no redirect.
    let stranger = browser();
    let res = stranger.get(&cb_url).send().await.expect("callback");
    assert_error(res, 400, "oidc_state_mismatch").await;

    // Mix-up: the response says another issuer answered.
    let cb_url = provider_login(&c, &app, "carol", "/app").await;
    let mut u = reqwest::Url::parse(&cb_url).expect("url");
    let mut pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.push(("iss".into(), "https://attacker.example".into()));
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let to = callback(&c, u.as_str()).await;
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("oidc_issuer_mismatch"),
        "{to}"
    );

    // Code injection: a code the provider issued to another client, pasted into this login.
    let other_code = {
        // PKCE is required by the provider: any S256 pair will do for `other`.
        let authorize = format!(
            "{}/auth?client_id=other&response_type=code&scope=openid&redirect_uri={}&state=s&nonce=n&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            idp.issuer, "http%3A%2F%2F127.0.0.1%3A9%2Fother%2Fcallback"
        );
        // Signed in at the provider already (its session cookie is in this jar).
        let mut url = authorize;
        loop {
            let res = c.get(&url).send().await.expect("authorize");
            assert!(res.status().is_redirection(), "{}", res.status());
            let next = absolute(&url, &location(&res));
            if next.starts_with("http://127.0.0.1:9/") {
                break param(&next, "code").expect("code for other");
            }
            url = next;
        }
    };
    let res = c
        .get(app.url("/auth/oidc/test/start?return_to=/app"))
        .send()
        .await
        .expect("start");
    let state = param(&location(&res), "state").expect("state");
    let injected = format!(
        "{}?code={other_code}&state={state}&iss={}",
        app.url("/auth/oidc/test/callback"),
        urlencode(&idp.issuer)
    );
    let to = callback(&c, &injected).await;
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("oidc_code_rejected"),
        "{to}"
    );
    let res = c.get(app.url("/auth/me")).send().await.expect("me");
    assert_eq!(res.status(), 401, "none of these logged anyone in");
}

fn urlencode(s: &str) -> String {
    url_escape(s)
}

pub(crate) fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn return_to_must_be_this_origin_or_an_allowed_spa_origin() {
    let port = free_port();
    // Discovery is not reached for a refused return_to: any issuer will do.
    let app = vestibule(port, |raw| {
        raw.spa_origins = vec!["http://127.0.0.1:5173".into()];
        provider(raw, "test", "http://127.0.0.1:9", "vestibule", "secret");
    })
    .await;
    let c = browser();
    for bad in [
        "https://attacker.example/",
        "//attacker.example/x",
        "/\\attacker.example",
        "http://127.0.0.1:1/",
        "javascript:alert(1)",
        "http://user@127.0.0.1/",
    ] {
        let res = c
            .get(app.url(&format!(
                "/auth/oidc/test/start?return_to={}",
                url_escape(bad)
            )))
            .send()
            .await
            .expect("start");
        assert_error(res, 400, "oidc_return_to_refused").await;
    }
    let res = c
        .get(app.url("/auth/oidc/nope/start"))
        .send()
        .await
        .expect("start");
    assert_error(res, 404, "oidc_provider_unknown").await;
    // An allowed SPA origin passes the check (and then meets the unreachable provider: 503).
    let res = c
        .get(app.url(&format!(
            "/auth/oidc/test/start?return_to={}",
            url_escape("http://127.0.0.1:5173/after")
        )))
        .send()
        .await
        .expect("start");
    assert_error(res, 503, "oidc_provider_unavailable").await;
}

// ---- A provider made in the test, for ID tokens a certified provider never issues. ----

#[derive(Clone, Copy, Debug)]
enum Forge {
    Valid,
    AlgNone,
    Hs256WithSecret,
    Expired,
    OtherNonce,
    OtherIssuer,
}

#[derive(Clone)]
struct Fake {
    issuer: String,
    nonce: Arc<Mutex<String>>,
    forge: Arc<Mutex<Forge>>,
}

pub(crate) const FAKE_SECRET: &str = "fake-client-secret-0123456789abcdef";

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn id_token(f: &Fake) -> String {
    let forge = *f.forge.lock().expect("lock");
    let nonce = match forge {
        Forge::OtherNonce => "a-nonce-of-an-earlier-login".to_owned(),
        _ => f.nonce.lock().expect("lock").clone(),
    };
    let issuer = match forge {
        Forge::OtherIssuer => "https://attacker.example".to_owned(),
        _ => f.issuer.clone(),
    };
    let now = chrono_now();
    let (iat, exp) = match forge {
        Forge::Expired => (now - 7200, now - 3600),
        _ => (now, now + 300),
    };
    if let Forge::AlgNone = forge {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(json!({
            "iss": issuer, "sub": "mallory", "aud": "vestibule", "exp": exp, "iat": iat,
            "nonce": nonce, "preferred_username": "mallory"
        })
        .to_string()
        .as_bytes());
        return format!("{header}.{payload}.");
    }
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(issuer).expect("issuer"),
        vec![Audience::new("vestibule".into())],
        ts(exp),
        ts(iat),
        StandardClaims::new(SubjectIdentifier::new("mallory".into()))
            .set_preferred_username(Some(openidconnect::EndUserUsername::new("mallory".into()))),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(nonce)));
    match forge {
        Forge::Hs256WithSecret => CoreIdToken::new(
            claims,
            &CoreHmacKey::new(FAKE_SECRET.as_bytes()),
            CoreJwsSigningAlgorithm::HmacSha256,
            None,
            None,
        ),
        _ => CoreIdToken::new(
            claims,
            &rsa_key(),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        ),
    }
    .expect("signed")
    .to_string()
}

pub(crate) fn chrono_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("time")
}

fn ts(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, 0).expect("timestamp")
}

pub(crate) fn rsa_key() -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(RSA_PEM, Some(JsonWebKeyId::new("k1".into())))
        .expect("test key")
}

async fn fake_provider() -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let fake = Fake {
        issuer: issuer.clone(),
        nonce: Arc::new(Mutex::new(String::new())),
        forge: Arc::new(Mutex::new(Forge::Valid)),
    };
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let jwks =
        json!({"keys": [serde_json::to_value(rsa_key().as_verification_key()).expect("jwk")]});
    let f = fake.clone();
    let router = Router::new()
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
                let token = id_token(&f);
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
    fake
}

/// Starts a login at Vestibule against the fake provider and completes the callback with
/// the token `forge` describes; the redirect's target.
async fn forged_login(app: &TestApp, fake: &Fake, c: &Client, forge: Forge) -> String {
    let res = c
        .get(app.url("/auth/oidc/fake/start?return_to=/app"))
        .send()
        .await
        .expect("start");
    assert_eq!(res.status(), 303);
    let authorize = location(&res);
    *fake.nonce.lock().expect("lock") = param(&authorize, "nonce").expect("nonce");
    *fake.forge.lock().expect("lock") = forge;
    let state = param(&authorize, "state").expect("state");
    callback(
        c,
        &app.url(&format!("/auth/oidc/fake/callback?code=c0de&state={state}")),
    )
    .await
}

#[tokio::test]
async fn forged_expired_replayed_and_foreign_id_tokens_are_refused() {
    let fake = fake_provider().await;
    let port = free_port();
    let app = vestibule(port, |raw| {
        provider(raw, "fake", &fake.issuer, "vestibule", FAKE_SECRET);
    })
    .await;
    for (forge, code) in [
        (Forge::AlgNone, "oidc_id_token_invalid"),
        (Forge::Hs256WithSecret, "oidc_id_token_invalid"),
        (Forge::Expired, "oidc_id_token_expired"),
        (Forge::OtherNonce, "oidc_nonce_mismatch"),
        (Forge::OtherIssuer, "oidc_issuer_mismatch"),
    ] {
        let c = browser();
        let to = forged_login(&app, &fake, &c, forge).await;
        assert_eq!(
            param(&to, "oidc_error").as_deref(),
            Some(code),
            "{forge:?}: {to}"
        );
        let res = c.get(app.url("/auth/me")).send().await.expect("me");
        assert_eq!(res.status(), 401, "{forge:?} logged nobody in");
    }
    // The same provider's genuine token logs in: the refusals above were the tokens'.
    let c = browser();
    let to = forged_login(&app, &fake, &c, Forge::Valid).await;
    assert_eq!(to, app.url("/app"));
    assert_eq!(me(&c, &app).await["user"]["username"], "mallory");
}

#[tokio::test]
async fn hmac_id_tokens_are_accepted_only_when_the_operator_lists_them() {
    let fake = fake_provider().await;
    let port = free_port();
    let app = vestibule(port, |raw| {
        provider(raw, "fake", &fake.issuer, "vestibule", FAKE_SECRET);
        raw.oidc.provider[0].id_token_algs = vec!["HS256".into()];
    })
    .await;
    let c = browser();
    let to = forged_login(&app, &fake, &c, Forge::Hs256WithSecret).await;
    assert_eq!(to, app.url("/app"), "configured: accepted");
    // `none` stays refused even then.
    let c = browser();
    let to = forged_login(&app, &fake, &c, Forge::AlgNone).await;
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("oidc_id_token_invalid")
    );
}

#[test]
fn config_refuses_alg_none_a_plain_http_issuer_and_a_missing_secret() {
    let mut raw = RawConfig {
        listen: "127.0.0.1:0".into(),
        ..RawConfig::default()
    };
    raw.oidc.provider.push(vestibule::auth::oidc::RawProvider {
        name: "Bad Name".into(),
        issuer: "http://idp.example".into(),
        client_id: "x".into(),
        client_secret: None,
        id_token_algs: vec!["none".into()],
        ..Default::default()
    });
    let err = raw.validate().expect_err("refused").to_string();
    for key in [
        "oidc.provider[0].name",
        "oidc.provider[0].issuer",
        "oidc.provider[0].client_secret",
        "oidc.provider[0].id_token_algs",
    ] {
        assert!(err.contains(key), "{key} in {err}");
    }
}

/// An upstream that answers every request with the `Authorization` header it received.
async fn echo_upstream() -> String {
    let router = Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    });
    crate::support::serve_router(router).await
}

/// An `/api` upstream at `url` that gets the provider's access token (the token relay).
pub(crate) fn relay_api(raw: &mut RawConfig, url: &str) {
    raw.upstream.push(vestibule::proxy::RawUpstream {
        prefix: "/api".into(),
        url: url.to_owned(),
        forward_access_token: true,
        ..Default::default()
    });
}

/// Whether the provider's userinfo endpoint accepts `authorization` (a live access token).
async fn provider_accepts(idp: &Idp, authorization: &str) -> bool {
    let res = Client::new()
        .get(format!("{}/me", idp.issuer))
        .header("authorization", authorization)
        .send()
        .await
        .expect("userinfo");
    res.status() == 200
}

#[tokio::test]
async fn an_upstream_gets_the_providers_access_token_refreshed_once_per_session_when_due() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    // Access tokens live 2 s: the relay refreshes within a second of expiry.
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb], "access_token_ttl": 2})).await else {
        return;
    };
    let upstream = echo_upstream().await;
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        relay_api(raw, &upstream);
        raw.upstream.push(vestibule::proxy::RawUpstream {
            prefix: "/plain".into(),
            url: upstream.clone(),
            ..Default::default()
        });
    })
    .await;
    let c = browser();
    let cb_url = provider_login(&c, &app, "dave", "/").await;
    let res = c.get(&cb_url).send().await.expect("callback");
    assert_eq!(res.status(), 303);
    // Nothing the browser was sent carries a token.
    let seen = format!("{:?}", res.headers());
    assert!(!seen.to_lowercase().contains("bearer"));

    let first = c.get(app.url("/api/x")).send().await.expect("api");
    assert_eq!(first.status(), 200);
    let first = first.text().await.expect("body");
    assert!(first.starts_with("Bearer "), "{first:?}");
    assert!(provider_accepts(&idp, &first).await, "a valid access token");
    // An upstream without the option gets no token.
    let plain = c.get(app.url("/plain/x")).send().await.expect("plain");
    assert_eq!(plain.text().await.expect("body"), "");

    // Past the refresh point, four concurrent calls: one refresh, one new token for all.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            let url = app.url("/api/y");
            tokio::spawn(async move {
                c.get(url)
                    .send()
                    .await
                    .expect("api")
                    .text()
                    .await
                    .expect("body")
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.expect("task"));
    }
    assert!(
        tokens.iter().all(|t| t == &tokens[0]),
        "single-flight: {tokens:?}"
    );
    assert_ne!(tokens[0], first, "refreshed");
    assert!(
        provider_accepts(&idp, &tokens[0]).await,
        "the refreshed token is valid"
    );
}

#[tokio::test]
async fn a_verified_email_links_when_opted_in_and_the_last_way_in_cannot_be_unlinked() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        raw.oidc.link_verified_email = true;
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    // An account with a password whose username is the provider's verified e-mail.
    let owner = app
        .signed_up("erin@example.test", "correct horse battery staple")
        .await;
    let owner_id = owner
        .get("/auth/me")
        .await
        .json::<Value>()
        .await
        .expect("json")["user"]["id"]
        .as_i64();
    let c = browser();
    let cb_url = provider_login(&c, &app, "erin", "/").await;
    assert_eq!(callback(&c, &cb_url).await, app.url("/"));
    let who = me(&c, &app).await;
    assert_eq!(
        who["user"]["id"].as_i64(),
        owner_id,
        "linked by the verified e-mail"
    );
    let csrf = who["csrf_token"].as_str().expect("csrf").to_owned();
    let list: Value = c
        .get(app.url("/auth/identities"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let ids = list["identities"].as_array().expect("identities");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["subject"], "erin");
    let id = ids[0]["id"].as_i64().expect("id");
    // The account has a password: the identity can go.
    let res = c
        .delete(app.url(&format!("/auth/identities/{id}")))
        .header("x-csrf-token", &csrf)
        .header("origin", app.url(""))
        .send()
        .await
        .expect("unlink");
    assert_eq!(res.status(), 204);

    // A user made by the provider has no password: its only identity stays.
    let c = browser();
    let cb_url = provider_login(&c, &app, "frank", "/").await;
    assert_eq!(callback(&c, &cb_url).await, app.url("/"));
    let csrf = me(&c, &app).await["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_owned();
    let list: Value = c
        .get(app.url("/auth/identities"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = list["identities"][0]["id"].as_i64().expect("id");
    let res = c
        .delete(app.url(&format!("/auth/identities/{id}")))
        .header("x-csrf-token", &csrf)
        .header("origin", app.url(""))
        .send()
        .await
        .expect("unlink");
    assert_error(res, 409, "oidc_last_login").await;
}

mod accounts;
mod client_auth;
mod refresh;
pub(crate) mod revocation;
