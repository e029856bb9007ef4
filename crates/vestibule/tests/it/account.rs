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
