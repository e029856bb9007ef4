//! Second factors: TOTP enrolment and login (replay refused, ±1 step only), recovery codes
//! (single use; issued with TOTP or a first passkey, regenerated, gone with the last factor), the
//! pending state granting nothing (and a pending bearer token dying with it), the attempt limit,
//! session rotation, the bearer flow, and the same on PostgreSQL.

use axum::Router;
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};
use vestibule::config::RawStore;
use vestibule::proxy::{RawUpstream, UpstreamPolicy};

use crate::services::PgSchema;
use crate::support::{
    COOKIE, PASSWORD, TestApp, TestClient, assert_error, serve_router, set_cookie_value,
};

const STEP: u64 = 30;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Waits (at most 6 s) until the current 30 s step has at least 6 s left, so codes computed for
/// "now ± n steps" keep their meaning while the test sends them.
async fn settle_in_step() {
    let left = STEP - unix_now() % STEP;
    if left < 6 {
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
    }
}

/// RFC 4648 base32 (no padding), as the enrolment shows the secret.
pub fn base32_decode(s: &str) -> Vec<u8> {
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

/// The code of `secret` `steps` steps away from now.
pub fn code(secret: &[u8], steps: i64) -> String {
    let t = (unix_now() as i64 + steps * STEP as i64) as u64;
    vestibule::auth::mfa::code_at(secret, t).expect("code")
}

/// Enrols TOTP for a logged-in client: returns the secret and the recovery codes. The
/// confirming code is the current step's.
pub async fn enrol(c: &mut TestClient) -> (Vec<u8>, Vec<String>) {
    let res = c.post_json("/auth/mfa/totp/enroll", &json!({})).await;
    assert_eq!(res.status(), 200);
    let e: Value = res.json().await.expect("json");
    let uri = e["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(
        uri.contains("algorithm=SHA1") || !uri.contains("algorithm="),
        "{uri}"
    );
    assert!(e["qr_svg"].as_str().expect("svg").contains("<svg"));
    let secret = base32_decode(e["secret"].as_str().expect("secret"));
    // Not active until confirmed: a wrong code is refused and changes nothing.
    let res = c
        .post_json("/auth/mfa/totp/confirm", &json!({"code": "000000"}))
        .await;
    if code(&secret, 0) != "000000" {
        assert_error(res, 401, "mfa_code_invalid").await;
    }
    let res = c
        .post_json("/auth/mfa/totp/confirm", &json!({"code": code(&secret, 0)}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// Logs in with the password: asserts the MFA answer and returns its body.
async fn password_step(c: &mut TestClient, user: &str) -> (Value, Option<String>) {
    let res = c.login(user, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let cookie = set_cookie_value(&res, COOKIE);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body.get("user").is_none(),
        "no user before the second factor"
    );
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    (body, cookie)
}

#[tokio::test]
async fn totp_login_needs_a_fresh_code_and_rotates_the_session() {
    settle_in_step().await;
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (secret, _) = enrol(&mut alice).await;
    // Enrolling again while enabled is refused.
    let res = alice.post_json("/auth/mfa/totp/enroll", &json!({})).await;
    assert_error(res, 409, "mfa_already_enabled").await;

    let mut c = app.client();
    let (body, pending_cookie) = password_step(&mut c, "alice").await;
    let methods = body["methods"].as_array().expect("methods");
    assert!(methods.contains(&json!("totp")) && methods.contains(&json!("recovery")));
    let pending_cookie = pending_cookie.expect("the pending state has its own session id");
    // The confirming code was spent: replaying it is refused.
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 0)}))
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    // The next step's code (+1, within the window) completes the login on a new session id.
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 1)}))
        .await;
    assert_eq!(res.status(), 200);
    let final_cookie = set_cookie_value(&res, COOKIE).expect("rotated");
    assert_ne!(final_cookie, pending_cookie);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["user"]["username"], "alice");
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_eq!(c.get("/auth/me").await.status(), 200);
    // The pending session id is dead.
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .header("cookie", format!("{COOKIE}={pending_cookie}"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    // The same code again, in a new login: refused (accepted once).
    let mut d = app.client();
    password_step(&mut d, "alice").await;
    let res = d
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 1)}))
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    // Removing TOTP: the password alone logs in again.
    let res = alice.delete("/auth/mfa/totp").await;
    assert_eq!(res.status(), 204);
    let body = app.client().login_ok("alice", PASSWORD).await;
    assert_eq!(body["user"]["username"], "alice");
    assert_error(alice.delete("/auth/mfa/totp").await, 404, "mfa_not_enabled").await;
}

/// Removing the account's last second factor is audited (`mfa.last_factor_removed`, named in
/// docs/SECURITY.md): the account is back to the password alone.
#[tokio::test]
async fn removing_the_last_factor_is_audited() {
    let (logs, _guard) = crate::support::Captured::install();
    settle_in_step().await;
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let me: Value = alice.get("/auth/me").await.json().await.expect("json");
    let id = me["user"]["id"].as_i64().expect("user id");
    enrol(&mut alice).await;
    assert!(
        !logs.text().contains("mfa.last_factor_removed"),
        "no removal yet:\n{}",
        logs.text()
    );
    assert_eq!(alice.delete("/auth/mfa/totp").await.status(), 204);
    let text = logs.text();
    assert!(
        text.lines().any(|l| l.contains("mfa.last_factor_removed")
            && l.contains(&format!("user_id={id}"))
            && l.contains("totp")),
        "no audit line for the removal:\n{text}"
    );
}

#[tokio::test]
async fn codes_two_steps_away_are_refused_one_step_back_accepted() {
    settle_in_step().await;
    let app = TestApp::spawn().await;
    let mut bob = app.signed_up("bob", PASSWORD).await;
    let res = bob.post_json("/auth/mfa/totp/enroll", &json!({})).await;
    let e: Value = res.json().await.expect("json");
    let secret = base32_decode(e["secret"].as_str().expect("secret"));
    // ±2 steps: refused at confirmation.
    for steps in [-2, 2] {
        let res = bob
            .post_json(
                "/auth/mfa/totp/confirm",
                &json!({"code": code(&secret, steps)}),
            )
            .await;
        assert_error(res, 401, "mfa_code_invalid").await;
    }
    // -1 step: accepted (clock drift).
    let res = bob
        .post_json(
            "/auth/mfa/totp/confirm",
            &json!({"code": code(&secret, -1)}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // At login: +2 refused, 0 accepted (after the -1 used at confirmation).
    let mut c = app.client();
    password_step(&mut c, "bob").await;
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 2)}))
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 0)}))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (_, codes) = enrol(&mut alice).await;
    let mut c = app.client();
    password_step(&mut c, "alice").await;
    let res = c
        .post_json(
            "/auth/mfa/recovery",
            &json!({"code": "aaaa-bbbb-cccc-dddd"}),
        )
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    // Typed back in capitals, without dashes: the same code.
    let typed = codes[3].to_uppercase().replace('-', "");
    let res = c
        .post_json("/auth/mfa/recovery", &json!({"code": typed}))
        .await;
    assert_eq!(res.status(), 200);
    let mut d = app.client();
    password_step(&mut d, "alice").await;
    let res = d
        .post_json("/auth/mfa/recovery", &json!({"code": codes[3]}))
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    let res = d
        .post_json("/auth/mfa/recovery", &json!({"code": codes[4]}))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_pending_state_grants_nothing() {
    let upstream =
        serve_router(Router::new().route("/api/secret", get(|| async { "secret" }))).await;
    let app = TestApp::spawn_with(|raw| {
        raw.upstream = vec![RawUpstream {
            prefix: "/api".into(),
            url: upstream.clone(),
            policy: UpstreamPolicy::RequireAuth,
            ..RawUpstream::default()
        }];
    })
    .await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    enrol(&mut alice).await;
    // Logged in as someone else first: the password step drops that login.
    let mut c = app.signed_up("mallory", PASSWORD).await;
    assert_eq!(c.get("/api/secret").await.status(), 200);
    password_step(&mut c, "alice").await;
    assert_error(c.get("/auth/me").await, 401, "not_authenticated").await;
    assert_error(c.get("/auth/sessions").await, 401, "not_authenticated").await;
    assert_error(c.get("/auth/tokens").await, 401, "not_authenticated").await;
    let res = c.post_json("/auth/tokens", &json!({"name": "x"})).await;
    assert_error(res, 401, "not_authenticated").await;
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "another long password"}),
        )
        .await;
    assert_error(res, 401, "not_authenticated").await;
    assert_error(c.get("/api/secret").await, 401, "not_authenticated").await;
    let res = c.post_json("/auth/mfa/totp/enroll", &json!({})).await;
    assert_error(res, 401, "not_authenticated").await;
    // Without a pending login the MFA routes refuse.
    let mut fresh = app.client();
    let res = fresh
        .post_json("/auth/mfa/totp", &json!({"code": "123456"}))
        .await;
    assert_error(res, 401, "mfa_not_pending").await;
    // The pending state needs the CSRF token like the login did.
    c.csrf = None;
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": "123456"}))
        .await;
    assert_error(res, 403, "csrf_token_missing").await;
}

#[tokio::test]
async fn wrong_codes_are_limited_per_account() {
    let app = TestApp::spawn_with(|raw| raw.rate_limits.mfa_per_user = "4/h".into()).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (secret, codes) = enrol(&mut alice).await;
    let mut c = app.client();
    password_step(&mut c, "alice").await;
    // The confirmation above took two attempts (a wrong code, the right one) from the budget.
    for _ in 0..2 {
        let res = c
            .post_json("/auth/mfa/recovery", &json!({"code": "wrong"}))
            .await;
        assert_error(res, 401, "mfa_code_invalid").await;
    }
    // Budget spent: even the right code waits, from any client.
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 1)}))
        .await;
    let body = assert_error(res, 429, "rate_limited").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("second-factor")
    );
    let mut d = app.client();
    password_step(&mut d, "alice").await;
    let res = d
        .post_json("/auth/mfa/recovery", &json!({"code": codes[0]}))
        .await;
    assert_error(res, 429, "rate_limited").await;
}

#[tokio::test]
async fn the_bearer_flow_swaps_the_pending_token_for_a_real_one() {
    settle_in_step().await;
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (secret, _) = enrol(&mut alice).await;
    let res = app
        .post_anon(
            "/auth/login",
            &json!({"username": "alice", "password": PASSWORD, "transport": "bearer"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(set_cookie_value(&res, COOKIE).is_none());
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["mfa_required"], true);
    let pending = body["token"].as_str().expect("pending token").to_owned();
    for (m, path) in [
        (Method::GET, "/auth/me"),
        (Method::GET, "/auth/sessions"),
        (Method::GET, "/auth/tokens"),
    ] {
        let res = app
            .with_bearer(m, path, &pending)
            .send()
            .await
            .expect("req");
        assert_eq!(res.status(), 401, "{path}");
    }
    let res = app
        .with_bearer(Method::POST, "/auth/mfa/totp", &pending)
        .json(&json!({"code": code(&secret, 1)}))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let real = body["token"].as_str().expect("token").to_owned();
    assert_ne!(real, pending);
    assert_eq!(body["user"]["username"], "alice");
    let res = app
        .with_bearer(Method::GET, "/auth/me", &real)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 200);
    // The pending token is dead.
    let res = app
        .with_bearer(Method::POST, "/auth/mfa/totp", &pending)
        .json(&json!({"code": code(&secret, 0)}))
        .send()
        .await
        .expect("req");
    assert_error(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn access_tokens_cannot_enrol_factors() {
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let pat = alice
        .create_token(&json!({"name": "ci", "scopes": ["read", "write"]}))
        .await;
    let res = app
        .with_bearer(Method::POST, "/auth/mfa/totp/enroll", &pat)
        .send()
        .await
        .expect("req");
    assert_error(res, 403, "session_required").await;
}

#[tokio::test]
async fn passkeys_are_off_without_a_domain_name() {
    let app =
        TestApp::spawn_with(|raw| raw.public_url = Some("http://127.0.0.1:8000".into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let res = alice
        .post_json("/auth/passkeys/register/start", &json!({}))
        .await;
    assert_error(res, 404, "passkeys_unavailable").await;
    let res = app.post_anon("/auth/passkey/login/start", &json!({})).await;
    assert_error(res, 404, "passkeys_unavailable").await;
}

#[tokio::test]
async fn passkey_ceremonies_are_single_use_and_need_a_challenge() {
    let app =
        TestApp::spawn_with(|raw| raw.public_url = Some("http://localhost:8000".into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let res = alice
        .post_json("/auth/passkeys/register/start", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let opts: Value = res.json().await.expect("json");
    assert_eq!(opts["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        opts["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    // A forged answer does not verify, and the challenge is gone afterwards.
    let forged = json!({"credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}
    }});
    let res = alice
        .post_json("/auth/passkeys/register/finish", &forged)
        .await;
    assert_error(res, 401, "webauthn_failed").await;
    let res = alice
        .post_json("/auth/passkeys/register/finish", &forged)
        .await;
    let body = assert_error(res, 401, "webauthn_failed").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("no WebAuthn challenge")
    );
    // Passwordless start gives options without allowCredentials and a CSRF token.
    let mut anon = app.client();
    let res = anon
        .post_json("/auth/passkey/login/start", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let opts: Value = res.json().await.expect("json");
    assert!(opts["csrf_token"].is_string());
    assert_eq!(opts["publicKey"]["rpId"], "localhost");
}

#[tokio::test]
async fn a_passkey_makes_webauthn_due_until_its_owner_removes_it() {
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let bob = app.signed_up("bob", PASSWORD).await;
    let id = app
        .state
        .users
        .by_username("alice")
        .await
        .expect("db")
        .expect("alice")
        .id;
    // A stored passkey (what a verified registration leaves behind).
    assert!(
        app.state
            .mfa
            .store
            .add_passkey(
                id,
                b"cred-1",
                &[7; 16],
                "{}",
                "laptop",
                &vestibule::email::Notice::none(),
            )
            .await
            .expect("db")
    );
    let list: Value = alice
        .get("/auth/passkeys")
        .await
        .json()
        .await
        .expect("json");
    let pk = list["passkeys"][0]["id"].as_i64().expect("id");
    assert_eq!(list["passkeys"][0]["name"], "laptop");
    let (body, _) = password_step(&mut app.client(), "alice").await;
    assert_eq!(body["methods"], json!(["webauthn"]));
    // Someone else's passkey cannot be removed, nor guessed at.
    assert_error(
        bob.delete(&format!("/auth/passkeys/{pk}")).await,
        404,
        "mfa_not_enabled",
    )
    .await;
    assert_error(bob.delete("/auth/passkeys/x").await, 404, "mfa_not_enabled").await;
    // Alice's session never proved that factor: the password alone does not remove it; a
    // re-authentication with a recovery code does.
    let res = alice.delete(&format!("/auth/passkeys/{pk}")).await;
    assert_error(res, 403, "mfa_reauth_required").await;
    reauth_with_a_seeded_code(&app, &mut alice, id, "seeded-code-0001").await;
    assert_eq!(
        alice.delete(&format!("/auth/passkeys/{pk}")).await.status(),
        204
    );
    let body = app.client().login_ok("alice", PASSWORD).await;
    assert_eq!(body["user"]["username"], "alice");
}

#[tokio::test]
async fn passwordless_starts_count_as_login_attempts_per_address() {
    let app = TestApp::spawn_with(|raw| raw.rate_limits.login_per_ip = "2/h".into()).await;
    for _ in 0..2 {
        let res = app.post_anon("/auth/passkey/login/start", &json!({})).await;
        assert_eq!(res.status(), 200);
    }
    let res = app.post_anon("/auth/passkey/login/start", &json!({})).await;
    assert_error(res, 429, "rate_limited").await;
    assert_eq!(
        app.session_count().await,
        2,
        "no record for the refused start"
    );
}

#[tokio::test]
async fn totp_login_works_on_postgres() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    settle_in_step().await;
    let url = schema.url.clone();
    let app = TestApp::spawn_with(|raw| {
        raw.database_url = url;
        raw.session.store = RawStore::One("database".into());
    })
    .await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (secret, codes) = enrol(&mut alice).await;
    let mut c = app.client();
    password_step(&mut c, "alice").await;
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 0)}))
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    let res = c
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 1)}))
        .await;
    assert_eq!(res.status(), 200);
    let mut d = app.client();
    password_step(&mut d, "alice").await;
    let res = d
        .post_json("/auth/mfa/recovery", &json!({"code": codes[0]}))
        .await;
    assert_eq!(res.status(), 200);
    // Regeneration and the status on PostgreSQL (the user row lock, the set replaced).
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 9);
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let fresh = codes_of(&res.json().await.expect("json"));
    assert_eq!(recover_with(&app, "alice", &codes[1]).await, 401);
    assert_eq!(recover_with(&app, "alice", &fresh[0]).await, 200);
    // The last factor takes the codes along.
    let res = alice.delete("/auth/mfa/totp").await;
    assert_eq!(res.status(), 204);
    let id = user_id(&app, "alice").await;
    assert_eq!(
        app.state.mfa.store.methods(id).await.expect("db"),
        vestibule::auth::mfa::MfaMethods::default()
    );
}

#[tokio::test]
async fn adding_or_removing_a_factor_needs_a_recent_password() {
    let app =
        TestApp::spawn_with(|raw| raw.public_url = Some("http://localhost:8000".into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (_secret, _codes) = enrol(&mut alice).await;
    // Eleven minutes later (the default window is ten), a stolen open session cannot remove the
    // factor nor enrol a new one.
    app.age_auth("alice", 660).await;
    let res = alice.delete("/auth/mfa/totp").await;
    assert_error(res, 403, "reauth_required").await;
    let res = alice.post_json("/auth/mfa/totp/enroll", &json!({})).await;
    assert_error(res, 403, "reauth_required").await;
    let res = alice
        .post_json("/auth/passkeys/register/start", &json!({}))
        .await;
    assert_error(res, 403, "reauth_required").await;
    // The TOTP factor is still there after the refusals (the login asks for it).
    password_step(&mut alice, "alice").await;
}

#[tokio::test]
async fn starting_a_passkey_login_does_not_log_anyone_out() {
    let app =
        TestApp::spawn_with(|raw| raw.public_url = Some("http://localhost:8000".into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let res = alice
        .post_json("/auth/passkey/login/start", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(alice.get("/auth/me").await.status(), 200, "cookie session");
    app.signed_up("bob", PASSWORD).await;
    let token = app.bearer_login("bob", PASSWORD).await;
    let res = app
        .with_bearer(Method::POST, "/auth/passkey/login/start", &token)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let me = app
        .with_bearer(Method::GET, "/auth/me", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200, "bearer session");
}

// ---------------------------------------------------------------------------------------------
// Recovery codes for every second factor, their regeneration, and the pending bearer record.

/// The origin (and `public_url`) of the passkey tests: the RP ID is `localhost`.
const RP_ORIGIN: &str = "http://localhost:8000";

/// Minimal CBOR (RFC 8949) head: major type `major`, argument `n`.
fn cbor_head(major: u8, n: usize) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=255 => vec![m | 24, n as u8],
        _ => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
    }
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = cbor_head(3, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = cbor_head(2, b.len());
    v.extend_from_slice(b);
    v
}

/// What a software authenticator answers to `navigator.credentials.create(options)` from
/// [`RP_ORIGIN`]: a new credential `cred_id` with "none" attestation, user present and verified,
/// and an ES256 public key (the P-256 base point: a valid key; no signature is ever made here).
fn soft_registration(options: &Value, cred_id: &[u8]) -> Value {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use sha2::{Digest, Sha256};
    const GX: &str = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
    const GY: &str = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let pk = &options["publicKey"];
    let client_data = json!({
        "type": "webauthn.create",
        "challenge": pk["challenge"].as_str().expect("challenge"),
        "origin": RP_ORIGIN,
        "crossOrigin": false,
    })
    .to_string();
    // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}.
    let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
    cose.extend(cbor_bytes(&hex(GX)));
    cose.push(0x22);
    cose.extend(cbor_bytes(&hex(GY)));
    let rp_id = pk["rp"]["id"].as_str().expect("rp id");
    let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
    auth_data.push(0x45); // UP | UV | AT
    auth_data.extend_from_slice(&0u32.to_be_bytes()); // signature counter
    auth_data.extend_from_slice(&[0; 16]); // AAGUID
    auth_data.extend_from_slice(&(cred_id.len() as u16).to_be_bytes());
    auth_data.extend_from_slice(cred_id);
    auth_data.extend(cose);
    let mut attestation = vec![0xa3];
    attestation.extend(cbor_text("fmt"));
    attestation.extend(cbor_text("none"));
    attestation.extend(cbor_text("attStmt"));
    attestation.push(0xa0);
    attestation.extend(cbor_text("authData"));
    attestation.extend(cbor_bytes(&auth_data));
    json!({
        "id": B64.encode(cred_id),
        "rawId": B64.encode(cred_id),
        "type": "public-key",
        "response": {
            "attestationObject": B64.encode(&attestation),
            "clientDataJSON": B64.encode(client_data.as_bytes()),
        },
    })
}

/// Registers a passkey for `c` through both ceremony routes; returns the 201 body.
async fn register_passkey(c: &mut TestClient, cred_id: &[u8], name: &str) -> Value {
    let res = c
        .post_json("/auth/passkeys/register/start", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let options: Value = res.json().await.expect("json");
    let credential = soft_registration(&options, cred_id);
    let res = c
        .post_json(
            "/auth/passkeys/register/finish",
            &json!({"credential": credential, "name": name}),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json().await.expect("json")
}

fn codes_of(body: &Value) -> Vec<String> {
    body["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect()
}

async fn mfa_status(c: &TestClient) -> Value {
    let res = c.get("/auth/mfa").await;
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

async fn user_id(app: &TestApp, username: &str) -> i64 {
    app.state
        .users
        .by_username(username)
        .await
        .expect("db")
        .expect("user")
        .id
}

/// A pending login of `user` completed with recovery `code`: the status it answers.
async fn recover_with(app: &TestApp, user: &str, code: &str) -> u16 {
    let mut c = app.client();
    password_step(&mut c, user).await;
    let res = c
        .post_json("/auth/mfa/recovery", &json!({"code": code}))
        .await;
    res.status().as_u16()
}

#[tokio::test]
async fn a_first_passkey_brings_recovery_codes_and_the_last_factor_takes_them() {
    let app = TestApp::spawn_with(|raw| raw.public_url = Some(RP_ORIGIN.into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    assert_eq!(
        mfa_status(&alice).await,
        json!({"totp": false, "passkeys": 0, "recovery_codes_left": 0})
    );
    // The first passkey is the first second factor: ten codes, in this answer only.
    let first = register_passkey(&mut alice, b"passkey-one-0001", "laptop").await;
    assert_eq!(first["name"], "laptop");
    let codes = codes_of(&first);
    assert_eq!(codes.len(), 10);
    let (body, _) = password_step(&mut app.client(), "alice").await;
    assert_eq!(body["methods"], json!(["webauthn", "recovery"]));
    assert_eq!(recover_with(&app, "alice", &codes[0]).await, 200);
    assert_eq!(
        mfa_status(&alice).await,
        json!({"totp": false, "passkeys": 1, "recovery_codes_left": 9})
    );
    // A second passkey leaves the set alone (no new codes, the old ones still work).
    let second = register_passkey(&mut alice, b"passkey-two-0002", "phone").await;
    assert!(second.get("recovery_codes").is_none(), "{second}");
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 9);
    // Removing one passkey keeps the codes; removing the last factor deletes them.
    let first_id = first["id"].as_i64().expect("id");
    let second_id = second["id"].as_i64().expect("id");
    let res = alice.delete(&format!("/auth/passkeys/{first_id}")).await;
    assert_eq!(res.status(), 204);
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 9);
    let res = alice.delete(&format!("/auth/passkeys/{second_id}")).await;
    assert_eq!(res.status(), 204);
    let id = user_id(&app, "alice").await;
    let left = app.state.mfa.store.methods(id).await.expect("db");
    assert_eq!(left.recovery_codes, 0, "no dormant codes without a factor");
    assert_eq!(
        mfa_status(&alice).await,
        json!({"totp": false, "passkeys": 0, "recovery_codes_left": 0})
    );
    // A new first factor issues a new set; the deleted codes do not come back.
    let again = register_passkey(&mut alice, b"passkey-three-03", "key").await;
    let fresh = codes_of(&again);
    assert_eq!(fresh.len(), 10);
    assert_eq!(recover_with(&app, "alice", &codes[1]).await, 401);
    assert_eq!(recover_with(&app, "alice", &fresh[0]).await, 200);
}

#[tokio::test]
async fn removing_totp_keeps_the_codes_while_a_passkey_remains() {
    settle_in_step().await;
    let app = TestApp::spawn_with(|raw| raw.public_url = Some(RP_ORIGIN.into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (_, codes) = enrol(&mut alice).await;
    // TOTP brought the set: the passkey brings none.
    let pk = register_passkey(&mut alice, b"passkey-after-01", "laptop").await;
    assert!(pk.get("recovery_codes").is_none(), "{pk}");
    assert_eq!(
        mfa_status(&alice).await,
        json!({"totp": true, "passkeys": 1, "recovery_codes_left": 10})
    );
    assert_eq!(alice.delete("/auth/mfa/totp").await.status(), 204);
    // The passkey is still a factor: its recovery codes stay and work.
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 10);
    assert_eq!(recover_with(&app, "alice", &codes[0]).await, 200);
    let pk_id = pk["id"].as_i64().expect("id");
    assert_eq!(
        alice
            .delete(&format!("/auth/passkeys/{pk_id}"))
            .await
            .status(),
        204
    );
    let id = user_id(&app, "alice").await;
    let left = app.state.mfa.store.methods(id).await.expect("db");
    assert_eq!(left, vestibule::auth::mfa::MfaMethods::default());
}

#[tokio::test]
async fn regenerating_recovery_codes_replaces_the_whole_set() {
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (_, old) = enrol(&mut alice).await;
    assert_eq!(recover_with(&app, "alice", &old[0]).await, 200);
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 9);
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let new = codes_of(&res.json().await.expect("json"));
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 10);
    // Every old code is dead, used or not; the new ones work once.
    assert_eq!(recover_with(&app, "alice", &old[1]).await, 401);
    assert_eq!(recover_with(&app, "alice", &old[0]).await, 401);
    assert_eq!(recover_with(&app, "alice", &new[0]).await, 200);
    assert_eq!(recover_with(&app, "alice", &new[0]).await, 401);
    assert_eq!(mfa_status(&alice).await["recovery_codes_left"], 9);
}

#[tokio::test]
async fn regenerating_needs_a_factor_a_recent_password_and_a_session() {
    let app = TestApp::spawn_with(|raw| raw.rate_limits.mfa_per_user = "6/h".into()).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    // No second factor: nothing to recover, no codes made.
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 409, "mfa_factor_required").await;
    let id = user_id(&app, "alice").await;
    assert_eq!(
        app.state.mfa.store.methods(id).await.expect("db"),
        vestibule::auth::mfa::MfaMethods::default()
    );
    // A factor (what a verified registration leaves behind), and a first set.
    assert!(
        app.state
            .mfa
            .store
            .add_passkey(
                id,
                b"cred-1",
                &[7; 16],
                "{}",
                "laptop",
                &vestibule::email::Notice::none(),
            )
            .await
            .expect("db")
    );
    // Now the account has a factor: the session must have proved one (a seeded recovery code).
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 403, "mfa_reauth_required").await;
    reauth_with_a_seeded_code(&app, &mut alice, id, "seeded-code-0002").await;
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let codes = codes_of(&res.json().await.expect("json"));
    // Without the CSRF token (cookie transport): refused.
    let csrf = alice.csrf.take();
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 403, "csrf_token_missing").await;
    alice.csrf = csrf;
    // An access token cannot, even a write one.
    let pat = alice
        .create_token(&json!({"name": "ci", "scopes": ["read", "write"]}))
        .await;
    let res = app
        .with_bearer(Method::POST, "/auth/mfa/recovery/regenerate", &pat)
        .send()
        .await
        .expect("req");
    assert_error(res, 403, "session_required").await;
    let res = app
        .with_bearer(Method::GET, "/auth/mfa", &pat)
        .send()
        .await
        .expect("req");
    assert_error(res, 403, "session_required").await;
    // A pending login is nobody.
    let mut pending = app.client();
    password_step(&mut pending, "alice").await;
    let res = pending
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 401, "not_authenticated").await;
    assert_error(pending.get("/auth/mfa").await, 401, "not_authenticated").await;
    // A stolen open session eleven minutes after the password: refused, the codes unchanged.
    app.age_auth("alice", 660).await;
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 403, "reauth_required").await;
    assert_eq!(recover_with(&app, "alice", &codes[0]).await, 200);
    // After re-authenticating with a second factor it works again, within the per-account
    // second-factor budget (6/h: the refusal for want of a factor, the seeded code, the first
    // regeneration, the recovery above and this re-authentication take five; the regeneration
    // is the sixth, and a seventh attempt is refused).
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "recovery_code": codes[1]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 429, "rate_limited").await;
}

/// Moves every timestamp of the session record `token` (and of the pending login inside it)
/// `secs` into the past: the record as the store would hold it `secs` seconds from now.
async fn age_session(app: &TestApp, token: &str, secs: i64) {
    use vestibule::token::{SecretToken, TokenKind};
    let key = SecretToken::parse(TokenKind::Session, token)
        .expect("token")
        .hash();
    let store = app.state.sessions.store();
    let mut r = (*store.load(&key).await.expect("load").expect("live record")).clone();
    r.created_at -= secs;
    r.last_seen -= secs;
    r.expires_at -= secs;
    r.absolute_expires_at -= secs;
    if let Some(at) = r
        .data
        .get_mut("_mfa_pending")
        .and_then(|p| p.get_mut("expires_at"))
    {
        *at = json!(at.as_i64().expect("expires_at") - secs);
    }
    assert!(store.delete(&key).await.expect("delete"));
    store.create(&r).await.expect("create");
}

#[tokio::test]
async fn a_pending_bearer_token_dies_with_the_pending_state() {
    let app = TestApp::spawn().await;
    app.signed_up("alice", PASSWORD).await;
    let id = user_id(&app, "alice").await;
    assert!(
        app.state
            .mfa
            .store
            .add_passkey(
                id,
                b"cred-1",
                &[7; 16],
                "{}",
                "laptop",
                &vestibule::email::Notice::none(),
            )
            .await
            .expect("db")
    );
    let login = json!({"username": "alice", "password": PASSWORD, "transport": "bearer"});
    let res = app.post_anon("/auth/login", &login).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let pending = body["token"].as_str().expect("pending token").to_owned();
    // The record's own expiry is the pending state's (5 minutes), not the idle timeout.
    use vestibule::token::{SecretToken, TokenKind};
    let key = SecretToken::parse(TokenKind::Session, &pending)
        .expect("token")
        .hash();
    let record = app
        .state
        .sessions
        .store()
        .load(&key)
        .await
        .expect("load")
        .expect("record");
    let now = vestibule::session::now();
    assert!(
        (now + 295..=now + 300).contains(&record.absolute_expires_at),
        "{} vs now {now}",
        record.absolute_expires_at
    );
    assert!(record.expires_at <= record.absolute_expires_at);
    // Live: the MFA routes take it (a wrong code is a wrong code, not a dead token).
    let try_code = |token: String| {
        app.with_bearer(Method::POST, "/auth/mfa/totp", &token)
            .json(&json!({"code": "000000"}))
            .send()
    };
    assert_error(
        try_code(pending.clone()).await.expect("req"),
        401,
        "mfa_code_invalid",
    )
    .await;
    // A real bearer session aged by as much lives on (its idle timeout is far longer)...
    app.signed_up("bob", PASSWORD).await;
    let real = app.bearer_login("bob", PASSWORD).await;
    age_session(&app, &real, 301).await;
    let res = app
        .with_bearer(Method::GET, "/auth/me", &real)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), 200);
    // ... while the pending token, five minutes and a second later, is dead everywhere.
    age_session(&app, &pending, 301).await;
    assert_error(
        try_code(pending.clone()).await.expect("req"),
        401,
        "invalid_token",
    )
    .await;
    let res = app
        .with_bearer(Method::GET, "/auth/me", &pending)
        .send()
        .await
        .expect("req");
    assert_error(res, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_first_passkey_brings_recovery_codes_on_postgres() {
    let Some((app, _schema)) = crate::services::spawn_on_postgres(|raw| {
        raw.public_url = Some(RP_ORIGIN.into());
    })
    .await
    else {
        return;
    };
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let first = register_passkey(&mut alice, b"passkey-pg-00001", "laptop").await;
    let codes = codes_of(&first);
    assert_eq!(codes.len(), 10);
    let second = register_passkey(&mut alice, b"passkey-pg-00002", "phone").await;
    assert!(second.get("recovery_codes").is_none(), "{second}");
    assert_eq!(recover_with(&app, "alice", &codes[0]).await, 200);
    for pk in [&first, &second] {
        let id = pk["id"].as_i64().expect("id");
        let res = alice.delete(&format!("/auth/passkeys/{id}")).await;
        assert_eq!(res.status(), 204);
    }
    let id = user_id(&app, "alice").await;
    assert_eq!(
        app.state.mfa.store.methods(id).await.expect("db"),
        vestibule::auth::mfa::MfaMethods::default()
    );
}

/// Stores one recovery code `code` for `user_id` (what a first factor would have issued).
async fn seed_recovery_code(app: &TestApp, user_id: i64, code: &str) {
    let hash = vestibule::auth::mfa::recovery_hash(code);
    app.state
        .mfa
        .store
        .set_recovery_codes(user_id, &[hash])
        .await
        .expect("db");
}

/// Gives the account one known recovery code and proves it with the password in `client`'s
/// session: a re-authentication with a second factor, as factor management needs.
async fn reauth_with_a_seeded_code(
    app: &TestApp,
    client: &mut TestClient,
    user_id: i64,
    code: &str,
) {
    seed_recovery_code(app, user_id, code).await;
    let res = client
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "recovery_code": code}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

/// Issue 15 item 3: with a stolen open session and the password, an attacker re-authenticates,
/// but cannot remove TOTP, remove a passkey, regenerate the recovery codes nor add a factor; with
/// a TOTP code or a recovery code the owner can.
#[tokio::test]
async fn the_password_alone_cannot_strip_or_add_a_second_factor() {
    settle_in_step().await;
    let app = TestApp::spawn_with(|raw| raw.public_url = Some(RP_ORIGIN.into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (secret, codes) = enrol(&mut alice).await;
    // Enrolling proved the factor: the same session adds a passkey right away.
    let pk = register_passkey(&mut alice, b"passkey-strip-01", "laptop").await;
    let pk_id = pk["id"].as_i64().expect("id");
    // The attacker: alice's session eleven minutes on, and her password.
    app.age_auth("alice", 660).await;
    let res = alice
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["second_factor"], false, "{body}");
    let attempts: [(Method, String); 5] = [
        (Method::DELETE, "/auth/mfa/totp".into()),
        (Method::DELETE, format!("/auth/passkeys/{pk_id}")),
        (Method::POST, "/auth/mfa/recovery/regenerate".into()),
        (Method::POST, "/auth/passkeys/register/start".into()),
        (Method::POST, "/auth/mfa/totp/enroll".into()),
    ];
    for (method, path) in &attempts {
        let res = if *method == Method::DELETE {
            alice.delete(path).await
        } else {
            alice.post_json(path, &json!({})).await
        };
        let body = assert_error(res, 403, "mfa_reauth_required").await;
        assert!(
            body["hint"].as_str().unwrap_or("").contains("/auth/reauth"),
            "{path}: {body}"
        );
    }
    // A wrong code, or a right code with a wrong password, proves nothing.
    let wrong = if code(&secret, 1) == "123456" {
        "654321"
    } else {
        "123456"
    };
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "code": wrong}),
        )
        .await;
    assert_error(res, 401, "mfa_code_invalid").await;
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": "not the password", "code": code(&secret, 1)}),
        )
        .await;
    assert_error(res, 401, "invalid_credentials").await;
    // Two factors at once are refused (one proof, one factor).
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "code": wrong, "recovery_code": codes[0]}),
        )
        .await;
    assert_error(res, 422, "invalid_body").await;
    // A passkey answer without a challenge from /auth/reauth/webauthn/start proves nothing.
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"}});
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "credential": forged}),
        )
        .await;
    assert_error(res, 401, "webauthn_failed").await;
    let res = alice
        .post_json("/auth/reauth/webauthn/start", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let options: Value = res.json().await.expect("json");
    assert!(options["publicKey"]["challenge"].is_string(), "{options}");
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "credential": forged}),
        )
        .await;
    assert_error(res, 401, "webauthn_failed").await;
    // Everything is still there.
    assert_eq!(
        mfa_status(&alice).await,
        json!({"totp": true, "passkeys": 1, "recovery_codes_left": 10})
    );
    // With a TOTP code: the owner manages the factors.
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "code": code(&secret, 1)}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["second_factor"], true, "{body}");
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let fresh = codes_of(&res.json().await.expect("json"));
    assert_eq!(
        alice
            .delete(&format!("/auth/passkeys/{pk_id}"))
            .await
            .status(),
        204
    );
    // Later, with a recovery code instead: the last factor goes.
    app.age_auth("alice", 660).await;
    assert_error(alice.delete("/auth/mfa/totp").await, 403, "reauth_required").await;
    let res = alice
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "recovery_code": fresh[0]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(alice.delete("/auth/mfa/totp").await.status(), 204);
    assert_eq!(
        mfa_status(&alice).await,
        json!({"totp": false, "passkeys": 0, "recovery_codes_left": 0})
    );
}

/// A session whose login passed the second factor has a factor proof (for the window); a proof
/// goes stale like the password's.
#[tokio::test]
async fn a_login_through_the_second_factor_counts_as_a_factor_proof() {
    settle_in_step().await;
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let (secret, _) = enrol(&mut alice).await;
    let mut other = app.client();
    password_step(&mut other, "alice").await;
    let res = other
        .post_json("/auth/mfa/totp", &json!({"code": code(&secret, 1)}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    other.csrf = body["csrf_token"].as_str().map(str::to_owned);
    let res = other
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    // The proof is the session's own: alice's first session, aged, has lost it.
    app.age_auth("alice", 660).await;
    let res = alice
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 200);
    let res = alice
        .post_json("/auth/mfa/recovery/regenerate", &json!({}))
        .await;
    assert_error(res, 403, "mfa_reauth_required").await;
}
