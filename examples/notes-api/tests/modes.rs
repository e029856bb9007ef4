//! The real `notes-api` binary in both modes: library (Vestibule in-process, `AuthUser`) and
//! upstream (identity headers from a gateway, with and without the signed assertion).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A running `notes-api`, killed on drop.
struct NotesApi {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for NotesApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `notes-api ARGS --listen 127.0.0.1:0` and reads the address it announces.
fn start(args: &[&str]) -> NotesApi {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notes-api"));
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Vestibule reads VESTIBULE_* as configuration: the caller's must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("VESTIBULE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn notes-api");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    // Bounded: the process prints one line once listening, or exits (EOF).
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let base = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("notes-api did not announce its address: {line:?}"))
        .to_owned();
    NotesApi {
        child,
        base,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Signs up in library mode; returns the cookie client and its CSRF token.
async fn signed_up(api: &NotesApi, username: &str) -> (reqwest::Client, String) {
    let c = http();
    let res = c
        .post(format!("{}/auth/signup", api.base))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().expect("csrf_token").to_owned();
    (c, csrf)
}

#[tokio::test]
async fn library_mode_keeps_notes_per_user_behind_vestibule_sessions_and_csrf() {
    let api = start(&["library", "--database", "vestibule.db"]);
    let notes = format!("{}/api/notes", api.base);

    // Anonymous: the AuthUser extractor refuses.
    let res = http().get(&notes).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "not_authenticated");

    let (alice, csrf) = signed_up(&api, "alice").await;
    // Cookie transport without the CSRF token: refused by Vestibule's CSRF layer.
    let res = alice
        .post(&notes)
        .json(&json!({"text": "forged"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Value>().await.expect("json")["code"],
        "csrf_token_missing"
    );
    let res = alice
        .post(&notes)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "buy milk"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["user"]["username"], "alice");
    assert_eq!(created["note"]["text"], "buy milk");

    // Bad input: our error format, not a panic.
    let res = alice
        .post(&notes)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "   "}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.json::<Value>().await.expect("json")["code"],
        "invalid_body"
    );

    let list: Value = alice
        .get(&notes)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(list["user"]["username"], "alice");
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(1));

    // Bob, over the bearer transport: his own (empty) list, and no CSRF token needed.
    let res = http()
        .post(format!("{}/auth/signup", api.base))
        .json(&json!({"username": "bob", "password": PASSWORD, "transport": "bearer"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = res.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let bearer = reqwest::Client::new();
    let list: Value = bearer
        .get(&notes)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(list["user"]["username"], "bob");
    assert_eq!(list["notes"], json!([]));
    let res = bearer
        .post(&notes)
        .bearer_auth(&token)
        .json(&json!({"text": "bob's"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::CREATED);

    // Logged out: the cookie no longer opens the notes.
    let res = alice
        .post(format!("{}/auth/logout", api.base))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert!(res.status().is_success(), "logout: {}", res.status());
    let res = alice.get(&notes).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// `POST` with the CSRF token of a cookie session.
async fn post_csrf(c: &reqwest::Client, url: &str, csrf: &str, body: Value) -> reqwest::Response {
    c.post(url)
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn library_mode_logs_users_in_through_vestibules_login_flow() {
    let api = start(&["library", "--database", "vestibule.db"]);
    let notes = format!("{}/api/notes", api.base);
    let login = format!("{}/api/login", api.base);
    signed_up(&api, "carol").await;

    // A wrong password: Vestibule's answer, and no session.
    let c = http();
    let res = c
        .post(&login)
        .json(&json!({"username": "carol", "password": "not the password"}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.json::<Value>().await.expect("json")["code"],
        "invalid_credentials"
    );
    let res = c.get(&notes).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // An unknown user gets the same answer.
    let res = c
        .post(&login)
        .json(&json!({"username": "nobody", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The right password: a cookie session that opens the notes, the CSRF token for writes, and
    // the device cookie a browser login gets.
    let res = c
        .post(&login)
        .json(&json!({"username": "carol", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    assert!(
        cookies.iter().any(|c| c.contains("_session=")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.contains("_device=")),
        "{cookies:?}"
    );
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["user"]["username"], "carol");
    let csrf = body["csrf_token"].as_str().expect("csrf_token").to_owned();
    let res = post_csrf(&c, &notes, &csrf, json!({"text": "from /api/login"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let me: Value = c
        .get(format!("{}/auth/me", api.base))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["username"], "carol");

    // The bearer transport: the session token in the body, no cookie.
    let res = reqwest::Client::new()
        .post(&login)
        .json(&json!({"username": "carol", "password": PASSWORD, "transport": "bearer"}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("set-cookie").is_none());
    let token = res.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let list: Value = reqwest::Client::new()
        .get(&notes)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(list["user"]["username"], "carol");
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(1));
}

/// RFC 4648 base32 (no padding), as Vestibule shows a TOTP secret.
fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .expect("base32 character") as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn library_mode_login_leaves_a_second_factor_pending() {
    let api = start(&["library", "--database", "vestibule.db"]);
    let notes = format!("{}/api/notes", api.base);

    // Dave turns TOTP on (the signup proved his password just now).
    let (dave, csrf) = signed_up(&api, "dave").await;
    let res = post_csrf(
        &dave,
        &format!("{}/auth/mfa/totp/enroll", api.base),
        &csrf,
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let secret = base32_decode(
        res.json::<Value>().await.expect("json")["secret"]
            .as_str()
            .expect("secret"),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let code = vestibule::auth::mfa::code_at(&secret, now).expect("code");
    let res = post_csrf(
        &dave,
        &format!("{}/auth/mfa/totp/confirm", api.base),
        &csrf,
        json!({"code": code}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let recovery = res.json::<Value>().await.expect("json")["recovery_codes"][0]
        .as_str()
        .expect("recovery code")
        .to_owned();

    // The password through /api/login logs nobody in: a pending state, which opens no notes.
    let c = http();
    let res = c
        .post(format!("{}/api/login", api.base))
        .json(&json!({"username": "dave", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body["methods"]
            .as_array()
            .is_some_and(|m| m.contains(&json!("totp"))),
        "{body}"
    );
    assert!(body.get("user").is_none(), "{body}");
    let pending_csrf = body["csrf_token"].as_str().expect("csrf_token").to_owned();
    let res = c.get(&notes).send().await.expect("get");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Vestibule's second-factor route completes it: now the session is Dave's.
    let res = post_csrf(
        &c,
        &format!("{}/auth/mfa/recovery", api.base),
        &pending_csrf,
        json!({"code": recovery}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.expect("json")["user"]["username"],
        "dave"
    );
    let list: Value = c
        .get(&notes)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(list["user"]["username"], "dave");
}

fn gateway_get(url: &str, id: &str, username: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .get(url)
        .header("x-vestibule-user-id", id)
        .header("x-vestibule-username", username)
}

#[tokio::test]
async fn upstream_mode_reads_the_identity_headers_and_refuses_requests_without_them() {
    let api = start(&["upstream"]);
    let notes = format!("{}/api/notes", api.base);

    for res in [
        reqwest::get(&notes).await.expect("get"),
        gateway_get(&notes, "abc", "alice")
            .send()
            .await
            .expect("get"),
        reqwest::Client::new()
            .get(&notes)
            .header("x-vestibule-user-id", "1")
            .send()
            .await
            .expect("get"),
    ] {
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.json::<Value>().await.expect("json")["code"],
            "not_authenticated"
        );
    }

    let res = reqwest::Client::new()
        .post(&notes)
        .header("x-vestibule-user-id", "1")
        .header("x-vestibule-username", "alice")
        .json(&json!({"text": "from alice"}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::CREATED);

    let alice: Value = gateway_get(&notes, "1", "alice")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(alice["user"], json!({"id": 1, "username": "alice"}));
    assert_eq!(alice["notes"][0]["text"], "from alice");
    let bob: Value = gateway_get(&notes, "2", "bob")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(bob["notes"], json!([]));

    let who: Value = gateway_get(&format!("{}/api/whoami", api.base), "2", "bob")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        who["vestibule_headers"],
        json!(["x-vestibule-user-id", "x-vestibule-username"])
    );
}

/// A JWK set server for `key` on a free loopback port.
async fn jwks_server(key: &SigningKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let set = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}]});
    let app = axum::Router::new().route(
        "/auth/jwks.json",
        axum::routing::get(move || std::future::ready(axum::Json(set.clone()))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/auth/jwks.json")
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    i64::try_from(secs).expect("time")
}

/// An assertion as the gateway makes them (crates/vestibule/src/proxy/assertion.rs).
fn assertion(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

#[tokio::test]
async fn upstream_mode_with_a_jwks_url_requires_a_valid_assertion_for_the_same_user() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let jwks = jwks_server(&key).await;
    let audience = "http://notes.internal:8001";
    let api = start(&["upstream", "--jwks-url", &jwks, "--audience", audience]);
    let notes = format!("{}/api/notes", api.base);
    let claims = |sub: &str, name: &str, aud: &str, exp: i64| {
        json!({"iss": "http://localhost:8000", "aud": aud, "sub": sub, "preferred_username": name,
               "auth_time": now(), "iat": now(), "exp": exp})
    };
    let valid = assertion(&key, "k1", &claims("1", "alice", audience, now() + 60));
    let res = gateway_get(&notes, "1", "alice")
        .header("x-vestibule-assertion", &valid)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.expect("json")["user"]["username"],
        "alice"
    );

    let other = SigningKey::from_bytes(&[9; 32]);
    let mut tampered = valid.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let refused = [
        ("no assertion", None),
        (
            "another user's assertion",
            Some(assertion(
                &key,
                "k1",
                &claims("2", "bob", audience, now() + 60),
            )),
        ),
        (
            "signed by another key",
            Some(assertion(
                &other,
                "k1",
                &claims("1", "alice", audience, now() + 60),
            )),
        ),
        (
            "unknown key id",
            Some(assertion(
                &key,
                "k2",
                &claims("1", "alice", audience, now() + 60),
            )),
        ),
        (
            "expired",
            Some(assertion(
                &key,
                "k1",
                &claims("1", "alice", audience, now() - 120),
            )),
        ),
        (
            "for another backend",
            Some(assertion(
                &key,
                "k1",
                &claims("1", "alice", "http://other:9", now() + 60),
            )),
        ),
        ("tampered signature", Some(tampered)),
        ("not a JWT", Some("garbage".to_owned())),
    ];
    for (what, jwt) in refused {
        let mut req = gateway_get(&notes, "1", "alice");
        if let Some(jwt) = jwt {
            req = req.header("x-vestibule-assertion", jwt);
        }
        let res = req.send().await.expect("get");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            res.json::<Value>().await.expect("json")["code"],
            "not_authenticated",
            "{what}"
        );
    }
}
