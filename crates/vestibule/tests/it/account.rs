//! Account security (issue 9): password quality, re-authentication, the hashing cap, presets
//! and cookies, admin revocation and one-time reset tokens.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn signup_refuses_each_weak_password_with_its_own_code() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    for (password, code) in [
        ("seven c", "password_too_short"),
        (&*"x".repeat(1025), "password_too_long"),
        ("password1", "password_too_common"),
        ("Iloveyou", "password_too_common"),
        ("my name is GRACE!", "password_contains_username"),
    ] {
        let res = c
            .post_json(
                "/auth/signup",
                &json!({"username": "grace", "password": password}),
            )
            .await;
        let body = assert_error(res, 422, code).await;
        assert!(body["hint"].is_string(), "{body}");
    }
    assert_eq!(app.state.users.list().await.expect("list").len(), 0);
    // Any Unicode, no composition rules, 64 characters and more.
    let long: String = "ß".repeat(70);
    for (i, password) in ["пароль без правил", "長い秘密の合言葉", long.as_str()]
        .into_iter()
        .enumerate()
    {
        let res = app
            .client()
            .post_json(
                "/auth/signup",
                &json!({"username": format!("uni{i}"), "password": password}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "{password}");
    }
}

#[tokio::test]
async fn short_password_message_recommends_fifteen_characters() {
    let app = TestApp::spawn().await;
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": "heidi", "password": "short"}),
        )
        .await;
    let body = assert_error(res, 422, "password_too_short").await;
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains('8') && message.contains("15"), "{message}");
}

#[tokio::test]
async fn password_change_applies_the_same_quality_rules() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("ivan", PASSWORD).await;
    for (new, code) in [
        ("123456789", "password_too_common"),
        ("ivan's new pass", "password_contains_username"),
        ("tiny", "password_too_short"),
    ] {
        let res = c
            .post_json(
                "/auth/password",
                &json!({"current_password": PASSWORD, "new_password": new}),
            )
            .await;
        assert_error(res, 422, code).await;
    }
    // The old password still works: nothing was changed.
    let mut other = app.client();
    other.login_ok("ivan", PASSWORD).await;
}

/// The id of a session of `c` other than its own, from `GET /auth/sessions`.
async fn other_session_id(c: &TestClient) -> String {
    let list: serde_json::Value = c.get("/auth/sessions").await.json().await.expect("json");
    list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("another session")
        .to_owned()
}

#[tokio::test]
async fn sensitive_actions_are_refused_when_the_proof_is_stale_and_allowed_after_reauth() {
    let app = TestApp::spawn().await;
    let mut c = app.signed_up("judy", PASSWORD).await;
    let mut other = app.client();
    other.login_ok("judy", PASSWORD).await;
    let other_id = other_session_id(&c).await;
    // Eleven minutes after the logins (the default window is ten).
    app.age_auth("judy", 660).await;

    let res = c.post_json("/auth/tokens", &json!({"name": "ci"})).await;
    let body = assert_error(res, 403, "reauth_required").await;
    assert!(
        body["hint"].as_str().unwrap_or("").contains("/auth/reauth"),
        "{body}"
    );
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_error(res, 403, "reauth_required").await;
    let res = c.delete(&format!("/auth/sessions/{other_id}")).await;
    assert_error(res, 403, "reauth_required").await;
    assert_error(c.post("/auth/logout-all").await, 403, "reauth_required").await;
    assert_eq!(app.session_count().await, 2, "nothing was ended");

    // A wrong password proves nothing.
    let res = c
        .post_json("/auth/reauth", &json!({"password": "not the password"}))
        .await;
    assert_error(res, 401, "invalid_credentials").await;
    assert_error(c.post("/auth/logout-all").await, 403, "reauth_required").await;

    let res = c
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    assert!(body["reauth_until"].is_string(), "{body}");

    // Re-authenticating one session does not refresh the others.
    let res = other.post_json("/auth/tokens", &json!({"name": "x"})).await;
    assert_error(res, 403, "reauth_required").await;

    let res = c.post_json("/auth/tokens", &json!({"name": "ci"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = c.delete(&format!("/auth/sessions/{other_id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = c
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.expect("json");
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_eq!(c.post("/auth/logout-all").await.status(), 204);
    assert_eq!(app.session_count().await, 0);
}

#[tokio::test]
async fn ending_ones_own_session_needs_no_reauth() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("kate", PASSWORD).await;
    app.age_auth("kate", 3600).await;
    let list: serde_json::Value = c.get("/auth/sessions").await.json().await.expect("json");
    let own = list["sessions"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        c.delete(&format!("/auth/sessions/{own}")).await.status(),
        204
    );
    assert_eq!(c.get("/auth/me").await.status(), 401);
}

#[tokio::test]
async fn bearer_sessions_need_reauth_too() {
    let app = TestApp::spawn().await;
    app.signed_up("liam", PASSWORD).await;
    let token = app.bearer_login("liam", PASSWORD).await;
    app.age_auth("liam", 660).await;
    let create = || {
        app.with_bearer(reqwest::Method::POST, "/auth/tokens", &token)
            .json(&json!({"name": "script"}))
    };
    let res = create().send().await.expect("request");
    assert_error(res, 403, "reauth_required").await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/reauth", &token)
        .json(&json!({"password": "wrong password!"}))
        .send()
        .await
        .expect("request");
    assert_error(res, 401, "invalid_credentials").await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/reauth", &token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let res = create().send().await.expect("request");
    assert_eq!(res.status(), StatusCode::CREATED);
    // An access token cannot prove anything for the account.
    let pat: serde_json::Value = res.json().await.expect("json");
    let pat = pat["token"].as_str().expect("token");
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/reauth", pat)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn reauth_shares_the_accounts_login_budget() {
    let app = TestApp::spawn_with(|raw| {
        raw.rate_limits.login_per_user = "3/hour".into();
        raw.rate_limits.login_per_device = "3/hour".into();
    })
    .await;
    let mut c = app.signed_up("mona", PASSWORD).await;
    let mut refused = 0;
    for _ in 0..5 {
        let res = c
            .post_json("/auth/reauth", &json!({"password": "guess guess guess"}))
            .await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            assert!(res.headers().contains_key("retry-after"));
        }
    }
    assert!(
        refused >= 2,
        "guesses past the budget are refused ({refused})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_never_runs_more_hashes_than_the_memory_budget_allows() {
    let app = TestApp::spawn_with(|raw| {
        raw.auth.hash_parallelism = Some(16);
        // Three hashes of 19 MiB fit in 60 MiB.
        raw.auth.hash_memory_budget = "60MiB".into();
        raw.auth.hash_queue_timeout = "300ms".into();
    })
    .await;
    app.signed_up("storm", PASSWORD).await;
    assert_eq!(app.state.hasher.capacity(), 3);
    let http = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..500 {
        let http = http.clone();
        let url = app.url("/auth/login");
        let password = if i % 2 == 0 {
            PASSWORD
        } else {
            "wrong guess here"
        };
        tasks.spawn(async move {
            let res = http
                .post(url)
                .json(&json!({"username": "storm", "password": password}))
                .send()
                .await
                .expect("request");
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key("retry-after");
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (
                status,
                body["code"].as_str().unwrap_or("").to_owned(),
                retry_after,
            )
        });
    }
    let (mut ok, mut refused, mut busy) = (0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        let (status, code, retry_after) = r.expect("task");
        match status {
            200 => ok += 1,
            401 | 429 => refused += 1,
            503 => {
                assert_eq!(code, "busy", "the only 503 is busy");
                assert!(retry_after, "busy says when to retry");
                busy += 1;
            }
            other => panic!("unexpected status {other} ({code})"),
        }
    }
    assert_eq!(ok + refused + busy, 500);
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        busy > 0,
        "500 logins on 3 slots with a 300 ms queue overflow"
    );
    let peak = app.state.hasher.peak_concurrency();
    assert!(
        (1..=3).contains(&peak),
        "peak {peak} hashes at once, budget allows 3"
    );
}

#[tokio::test]
async fn a_hash_with_old_parameters_is_upgraded_at_the_next_login() {
    use argon2::password_hash::PasswordHasher as _;
    let app = TestApp::spawn().await;
    let weak = argon2::Argon2::from(argon2::Params::new(8 * 1024, 1, 1, None).expect("params"))
        .hash_password(PASSWORD.as_bytes())
        .expect("hash")
        .to_string();
    let name = vestibule::auth::Username::parse("olds").expect("name");
    let user = app.state.users.create(&name, &weak).await.expect("create");
    assert!(vestibule::auth::PasswordHasher::needs_rehash(&weak));

    // A wrong password changes nothing.
    let mut c = app.client();
    assert_error(
        c.login("olds", "not the password").await,
        401,
        "invalid_credentials",
    )
    .await;
    let stored = app
        .state
        .users
        .by_id(user.id)
        .await
        .expect("get")
        .expect("user");
    assert_eq!(stored.password_hash, weak);

    c.login_ok("olds", PASSWORD).await;
    let stored = app
        .state
        .users
        .by_id(user.id)
        .await
        .expect("get")
        .expect("user");
    assert_ne!(stored.password_hash, weak);
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        stored.password_hash
    );
    // The upgraded hash still proves the same password.
    app.client().login_ok("olds", PASSWORD).await;
}

#[tokio::test]
async fn https_deployments_get_prefixed_cookies_and_localhost_the_bare_name() {
    let app = TestApp::spawn_with(|raw| {
        raw.public_url = Some("https://api.acme.test".into());
    })
    .await;
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "nina", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookies = set_cookies(&res);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-vestibule_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(
        session.contains("Secure") && session.contains("Path=/"),
        "{session}"
    );
    assert!(!session.contains("Domain"), "{session}");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-vestibule_device=") && c.contains("Secure")),
        "the device cookie takes the same prefix: {cookies:?}"
    );

    let app = TestApp::spawn_with(|raw| {
        raw.public_url = Some("https://api.acme.test".into());
        raw.session.cookie_domain = Some("acme.test".into());
    })
    .await;
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "nina", "password": PASSWORD}),
        )
        .await;
    let cookies = set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Secure-vestibule_session=") && c.contains("Domain=acme.test")),
        "{cookies:?}"
    );

    // The test default (plain-http loopback) keeps the bare name.
    let app = TestApp::spawn().await;
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "nina", "password": PASSWORD}),
        )
        .await;
    assert!(set_cookie_value(&res, COOKIE).is_some());
}

#[tokio::test]
async fn strict_profile_makes_short_strict_sessions() {
    let app = TestApp::spawn_with(|raw| {
        raw.public_url = Some("https://api.acme.test".into());
        raw.spa_origins = vec!["https://app.acme.test".into()];
        raw.session.profile = "strict".into();
    })
    .await;
    let res = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "omar", "password": PASSWORD}),
        )
        .await;
    let cookies = set_cookies(&res);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-vestibule_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(
        session.contains("Max-Age=1800"),
        "30 minutes idle: {session}"
    );
    let records = app.state.sessions.store().list_user(1).await.expect("list");
    let r = &records[0];
    assert_eq!(r.absolute_expires_at - r.created_at, 12 * 3600);
}

#[tokio::test]
async fn logout_clears_site_cookies_unless_turned_off() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("pia", PASSWORD).await;
    let res = c.post("/auth/logout").await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        res.headers()
            .get("clear-site-data")
            .and_then(|v| v.to_str().ok()),
        Some("\"cookies\"")
    );
    // A bearer session is not a browser's: nothing to clear.
    let token = app.bearer_login("pia", PASSWORD).await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/logout", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 204);
    assert!(res.headers().get("clear-site-data").is_none());

    let app = TestApp::spawn_with(|raw| raw.session.clear_site_data = false).await;
    let c = app.signed_up("pia", PASSWORD).await;
    let res = c.post("/auth/logout").await;
    assert_eq!(res.status(), 204);
    assert!(res.headers().get("clear-site-data").is_none());
}

/// Issues a reset token for `username` straight through the data layer (what the CLI does).
async fn reset_token(app: &TestApp, username: &str, lifetime: std::time::Duration) -> String {
    let user = app
        .state
        .users
        .by_username(username)
        .await
        .expect("lookup")
        .expect("user");
    let (token, _) = vestibule::auth::PasswordResets::new(app.state.db.clone())
        .issue(user.id, lifetime)
        .await
        .expect("issue");
    token.expose().to_owned()
}

/// Runs the one-time reset flow on `app`: refusals keep the token, success ends the sessions,
/// the token is single use.
async fn reset_flow(app: &TestApp) {
    let c = app.signed_up("quinn", PASSWORD).await;
    let hour = std::time::Duration::from_secs(3600);
    let token = reset_token(app, "quinn", hour).await;
    assert!(token.starts_with("vrst_"), "{token}");
    let reset = |token: &str, new: &str| {
        let body = json!({"token": token, "new_password": new});
        async move { app.post_anon("/auth/password/reset", &body).await }
    };
    // A weak password is refused and does not burn the token.
    assert_error(reset(&token, "qwerty123").await, 422, "password_too_common").await;
    let res = reset(&token, "a fresh reset passphrase").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(c.get("/auth/me").await.status(), 401, "sessions ended");
    assert_error(
        app.client().login("quinn", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.client()
        .login_ok("quinn", "a fresh reset passphrase")
        .await;
    // Single use.
    let res = reset(&token, "another fresh passphrase").await;
    assert_error(res, 400, "reset_token_invalid").await;
    // A newer token voids an older one; an expired one and garbage are refused alike.
    let expired = reset_token(app, "quinn", std::time::Duration::ZERO).await;
    assert_error(
        reset(&expired, "another fresh passphrase").await,
        400,
        "reset_token_invalid",
    )
    .await;
    let old = reset_token(app, "quinn", hour).await;
    let new = reset_token(app, "quinn", hour).await;
    assert_error(
        reset(&old, "another fresh passphrase").await,
        400,
        "reset_token_invalid",
    )
    .await;
    assert_error(
        reset("vrst_nonsense", "another fresh passphrase").await,
        400,
        "reset_token_invalid",
    )
    .await;
    // A session token is not a reset token.
    let bearer = app.bearer_login("quinn", "a fresh reset passphrase").await;
    assert_error(
        reset(&bearer, "another fresh passphrase").await,
        400,
        "reset_token_invalid",
    )
    .await;
    let res = reset(&new, "another fresh passphrase").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_one_time_reset_token_sets_the_password_once() {
    let app = TestApp::spawn().await;
    reset_flow(&app).await;
}

#[tokio::test]
async fn a_reset_token_of_a_disabled_account_does_nothing() {
    let app = TestApp::spawn().await;
    app.signed_up("rita", PASSWORD).await;
    let token = reset_token(&app, "rita", std::time::Duration::from_secs(600)).await;
    let user = app
        .state
        .users
        .by_username("rita")
        .await
        .expect("get")
        .expect("user");
    app.state
        .users
        .set_active(user.id, false)
        .await
        .expect("disable");
    let res = app
        .post_anon(
            "/auth/password/reset",
            &json!({"token": token, "new_password": "a fresh reset passphrase"}),
        )
        .await;
    assert_error(res, 400, "reset_token_invalid").await;
}

#[tokio::test]
async fn reset_tokens_work_on_postgres_through_the_same_data_layer() {
    let Some((app, _schema)) = crate::services::spawn_on_postgres(|_| {}).await else {
        return;
    };
    assert!(app.state.db.is_postgres());
    reset_flow(&app).await;
}

/// Confusable and invisible spellings of `admin`: none parses as a username.
const CONFUSABLES: &[&str] = &[
    "ａｄｍｉｎ",
    "Ａdmin",
    "𝐚𝐝𝐦𝐢𝐧",
    "ⓐdmin",
    "ᵃdmin",
    "ad\u{ad}min",
    "adm\u{200b}in",
    "admin\u{200d}",
    "\u{feff}admin",
    "admin\u{1}",
    "admin\0",
    "admin\u{7f}",
    "admin\u{85}",
    "ADMİN",
    "admın",
    "admin ",
    " admin",
    "admin\n",
];

/// Issue 21 item 1 on one database: each confusable spelling of an account is refused without a
/// password check (even with the right password) and without touching the account's rate-limit
/// bucket; the case variants, which are canonically equal, log in as the account and share its
/// one bucket.
pub(crate) async fn one_canonical_username(app: &TestApp) {
    let _admin = app.signed_up("admin", PASSWORD).await;
    for name in CONFUSABLES {
        let res = app
            .post_anon(
                "/auth/login",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_error(res, 401, "invalid_credentials").await;
        let res = app
            .post_anon(
                "/auth/signup",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_error(res, 422, "invalid_username").await;
        assert!(
            app.state
                .users
                .by_username(name)
                .await
                .expect("lookup")
                .is_none(),
            "{name:?} finds nobody"
        );
    }
    assert_eq!(app.state.users.list().await.expect("list").len(), 1);
    // The confusables (18 of them, over a budget of 5) spent nothing of admin's bucket.
    let body = app.client().login_ok("admin", PASSWORD).await;
    assert_eq!(body["user"]["username"], "admin");
    for name in ["ADMIN", "Admin"] {
        let body = app.client().login_ok(name, PASSWORD).await;
        assert_eq!(body["user"]["username"], "admin", "{name}");
    }
    for _ in 0..2 {
        let res = app
            .post_anon(
                "/auth/login",
                &json!({"username": "aDmIn", "password": "wrong password"}),
            )
            .await;
        assert_error(res, 401, "invalid_credentials").await;
    }
    // Five attempts over three spellings: one bucket, now empty for every spelling.
    for name in ["admin", "ADMIN", "aDmIn"] {
        let res = app
            .post_anon(
                "/auth/login",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_error(res, 429, "rate_limited").await;
    }
    // The confusables are still refused the same way, never 429 (they have no bucket) nor 5xx.
    for name in CONFUSABLES {
        let res = app
            .post_anon(
                "/auth/login",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_error(res, 401, "invalid_credentials").await;
    }
}

pub(crate) fn canonical_limits(raw: &mut vestibule::config::RawConfig) {
    raw.rate_limits.login_per_user = "5/h".into();
}

#[tokio::test]
async fn one_canonical_username_on_sqlite() {
    let app = TestApp::spawn_with(canonical_limits).await;
    one_canonical_username(&app).await;
}

#[tokio::test]
async fn usernames_of_only_dots_are_refused() {
    let app = TestApp::spawn().await;
    for name in [".", "..", "..."] {
        let res = app
            .post_anon(
                "/auth/signup",
                &json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_error(res, 422, "invalid_username").await;
    }
    app.signed_up(".dot.", PASSWORD).await;
}

/// Strings no storage should see: NUL, other controls, noncharacters, bidi overrides, the
/// longest plausible input, SQL and format-string bait.
fn nasty_strings() -> Vec<String> {
    vec![
        "\0".into(),
        "a\0b".into(),
        "\0\0\0\0\0\0\0\0\0\0".into(),
        "\u{1}\u{1b}[2J\u{7}".into(),
        "\u{7f}\u{85}\u{9f}".into(),
        "\u{fffe}\u{ffff}".into(),
        "\u{202e}evil\u{202c}".into(),
        "💥".repeat(300),
        "x".repeat(5000),
        "' OR 1=1 --".into(),
        "%s%n%x{}".into(),
        String::new(),
    ]
}

/// Issue 21 item 1: every string field of the API's JSON bodies, given each nasty string, gets a
/// 4xx or a 2xx — never a 5xx (PostgreSQL refuses NUL in text: such input must be refused before
/// any query). A bounded loop over fields × values.
pub(crate) async fn no_string_field_makes_a_5xx(app: &TestApp) {
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let mut n = 0u32;
    for (i, v) in nasty_strings().into_iter().enumerate() {
        let fresh = format!("fuzz{i}");
        let bodies: Vec<(&str, serde_json::Value)> = vec![
            ("/auth/signup", json!({"username": v, "password": PASSWORD})),
            ("/auth/signup", json!({"username": fresh, "password": v})),
            ("/auth/login", json!({"username": v, "password": PASSWORD})),
            ("/auth/login", json!({"username": "alice", "password": v})),
            (
                "/auth/password/reset",
                json!({"token": v, "new_password": PASSWORD}),
            ),
            (
                "/auth/password/reset",
                json!({"token": "vrst_x", "new_password": v}),
            ),
            ("/auth/reauth", json!({"password": v})),
            ("/auth/reauth", json!({"password": PASSWORD, "code": v})),
            (
                "/auth/reauth",
                json!({"password": PASSWORD, "recovery_code": v}),
            ),
            (
                "/auth/password",
                json!({"current_password": v, "new_password": "a new pass phrase"}),
            ),
            (
                "/auth/password",
                json!({"current_password": "wrong password", "new_password": v}),
            ),
            ("/auth/tokens", json!({"name": v})),
            ("/auth/mfa/totp", json!({"code": v})),
            ("/auth/mfa/recovery", json!({"code": v})),
            ("/auth/mfa/totp/confirm", json!({"code": v})),
            (
                "/auth/passkeys/register/finish",
                json!({"name": v, "credential": {"id": v}}),
            ),
            (
                "/auth/mfa/webauthn/finish",
                json!({"credential": {"id": v}}),
            ),
            (
                "/auth/passkey/login/finish",
                json!({"credential": {"id": v}}),
            ),
        ];
        for (path, body) in bodies {
            let res = alice.post_json(path, &body).await;
            let status = res.status();
            let text = res.text().await.unwrap_or_default();
            assert!(!status.is_server_error(), "{path} {body}: {status} {text}");
            n += 1;
        }
        // The session must still be alice's (a refused input changes nothing).
        if alice.get("/auth/me").await.status() != 200 {
            alice = app.client();
            alice.login_ok("alice", PASSWORD).await;
        }
    }
    // The same nasty strings in the path of the DELETE routes.
    for v in ["%00", "a%00b", "%1b%5b2J", "%ef%bf%bf"] {
        for path in ["/auth/sessions/", "/auth/tokens/", "/auth/passkeys/"] {
            let status = alice.delete(&format!("{path}{v}")).await.status();
            assert!(!status.is_server_error(), "{path}{v}: {status}");
            n += 1;
        }
    }
    assert!(n > 200, "{n} requests");
}

#[tokio::test]
async fn no_string_field_makes_a_5xx_on_sqlite() {
    let app = TestApp::spawn().await;
    no_string_field_makes_a_5xx(&app).await;
}

/// Every account-security route: the one rule ([`vestibule::auth::AccountUser`]) applies to
/// each. (method, path, body)
const ACCOUNT_SECURITY_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/auth/sessions", ""),
    ("DELETE", "/auth/sessions/00", ""),
    ("POST", "/auth/logout-all", ""),
    ("GET", "/auth/tokens", ""),
    ("POST", "/auth/tokens", r#"{"name":"more"}"#),
    ("DELETE", "/auth/tokens/1", ""),
    (
        "POST",
        "/auth/password",
        r#"{"current_password":"x","new_password":"y"}"#,
    ),
    ("POST", "/auth/reauth", r#"{"password":"x"}"#),
    ("POST", "/auth/reauth/webauthn/start", ""),
    ("GET", "/auth/mfa", ""),
    ("POST", "/auth/mfa/totp/enroll", ""),
    ("POST", "/auth/mfa/totp/confirm", r#"{"code":"123456"}"#),
    ("DELETE", "/auth/mfa/totp", ""),
    ("POST", "/auth/mfa/recovery/regenerate", ""),
    ("GET", "/auth/passkeys", ""),
    ("DELETE", "/auth/passkeys/1", ""),
    ("POST", "/auth/passkeys/register/start", ""),
    (
        "POST",
        "/auth/passkeys/register/finish",
        r#"{"credential":{}}"#,
    ),
];

/// Issue 21 item 8 (account part): a personal access token — read or write — can neither read
/// nor change the account's security data on any route (a read token listed the sessions).
#[tokio::test]
async fn access_tokens_are_refused_on_every_account_security_route() {
    let app =
        TestApp::spawn_with(|raw| raw.public_url = Some("http://localhost:8000".into())).await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    let read = alice.create_token(&json!({"name": "read"})).await;
    let write = alice
        .create_token(&json!({"name": "write", "scopes": ["read", "write"]}))
        .await;
    let safe = |m: &str| m == "GET";
    for (method, path, body) in ACCOUNT_SECURITY_ROUTES {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        for (kind, token) in [("read", &read), ("write", &write)] {
            let mut req = app.with_bearer(m.clone(), path, token);
            if !body.is_empty() {
                req = req
                    .header("content-type", "application/json")
                    .body(body.to_string());
            }
            let res = req.send().await.expect("request");
            let status = res.status();
            let err: serde_json::Value = res.json().await.unwrap_or_default();
            assert_eq!(status, 403, "{kind} token, {method} {path}: {err}");
            // A write token, and a read token on a safe method, meet the account rule itself
            // (a read token's unsafe request may be refused earlier, by its scope).
            if kind == "write" || safe(method) {
                assert_eq!(
                    err["code"], "session_required",
                    "{kind} token, {method} {path}: {err}"
                );
            } else {
                assert!(
                    err["code"] == "session_required" || err["code"] == "insufficient_scope",
                    "{kind} token, {method} {path}: {err}"
                );
            }
        }
    }
    // The session itself reads them (the refusal is about the credential, not the route).
    for (method, path, _) in ACCOUNT_SECURITY_ROUTES.iter().filter(|r| safe(r.0)) {
        assert_eq!(alice.get(path).await.status(), 200, "{method} {path}");
    }
    // And the tokens still work where they belong.
    let res = app
        .with_bearer(reqwest::Method::GET, "/auth/me", &read)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
}

/// Issue 21 item 7: a token name with control or invisible characters (terminal escapes, a
/// bidi override that makes a row read like another) is refused at the API with its own code.
#[tokio::test]
async fn token_names_with_control_characters_are_refused() {
    let app = TestApp::spawn().await;
    let mut alice = app.signed_up("alice", PASSWORD).await;
    for name in [
        "\u{1b}[2K\rread",
        "ci\u{7}",
        "a\0b",
        "line\nbreak",
        "\u{9b}31m",
        "write\u{202e}daer",
        "zero\u{200b}width",
    ] {
        let res = alice
            .post_json("/auth/tokens", &json!({"name": name}))
            .await;
        let body = assert_error(res, 400, "invalid_characters").await;
        assert!(body["hint"].is_string(), "{body}");
    }
    let res = alice
        .post_json("/auth/tokens", &json!({"name": "déploiement 🚀"}))
        .await;
    assert_eq!(res.status(), 201, "printable Unicode is fine");
    let list: serde_json::Value = alice.get("/auth/tokens").await.json().await.expect("json");
    assert_eq!(list["tokens"].as_array().map(Vec::len), Some(1));
}
