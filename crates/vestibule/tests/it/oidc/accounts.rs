//! Provider identities and Vestibule accounts: linking from a logged-in session (with
//! re-authentication, never someone else's identity), unlinking, and the second factor a
//! trusted provider's `amr` stands in for.

use reqwest::Client;
use serde_json::{Value, json};

use super::{
    Idp, absolute, browser, follow_to_callback, free_port, location, param, provider, url_escape,
    vestibule,
};
use crate::support::{PASSWORD, TestApp, TestClient, assert_error};

/// A logged-in password account whose client follows no redirects (the callbacks are looked
/// at, not followed).
async fn account(app: &TestApp, username: &str) -> TestClient {
    let mut c = TestClient {
        http: browser(),
        base: app.base.clone(),
        csrf: None,
    };
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": username, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.expect("json");
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    c
}

/// The provider's half of a login, in a browser of its own (a fresh provider session, so any
/// `username` can sign in): from the authorization URL to Vestibule's callback URL (returned,
/// not followed). `mfa`: the provider's login reports a second factor in `amr`.
async fn idp_leg(authorize: &str, username: &str, mfa: bool) -> String {
    let c = browser();
    let (page_url, html) = match follow_to_callback(&c, authorize.to_owned()).await {
        Ok(callback) => return callback,
        Err(page) => page,
    };
    assert!(html.contains("name=\"login\""), "login page: {html}");
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("form action");
    let form = if mfa {
        format!("login={}&mfa=1", url_escape(username))
    } else {
        format!("login={}", url_escape(username))
    };
    let res = c
        .post(absolute(&page_url, action))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("login post");
    assert!(res.status().is_redirection(), "{}", res.status());
    let next = absolute(&page_url, &location(&res));
    follow_to_callback(&c, next)
        .await
        .expect("back to Vestibule")
}

/// `POST /auth/oidc/{p}/link`; the response.
async fn start_link(c: &mut TestClient, p: &str, return_to: &str) -> reqwest::Response {
    c.post_json(
        &format!("/auth/oidc/{p}/link"),
        &json!({"return_to": return_to}),
    )
    .await
}

/// Links `username`'s identity at provider `p` to `c`'s account; the callback's redirect.
async fn link(c: &mut TestClient, p: &str, username: &str) -> String {
    let res = start_link(c, p, "/settings").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    let url = body["url"].as_str().expect("url").to_owned();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let cb = idp_leg(&url, username, false).await;
    let res = c.http.get(&cb).send().await.expect("callback");
    assert_eq!(res.status(), 303);
    location(&res)
}

async fn me(c: &Client, app: &TestApp) -> (u16, Value) {
    let res = c.get(app.url("/auth/me")).send().await.expect("me");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn identities(c: &TestClient) -> Vec<Value> {
    let res = c.get("/auth/identities").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    body["identities"].as_array().expect("identities").clone()
}

/// A login at provider `p` in a fresh browser as `username`; the browser and the callback's
/// redirect.
async fn provider_login_as(app: &TestApp, p: &str, username: &str, mfa: bool) -> (Client, String) {
    let c = browser();
    let res = c
        .get(app.url(&format!("/auth/oidc/{p}/start?return_to=/app")))
        .send()
        .await
        .expect("start");
    assert_eq!(res.status(), 303);
    let cb = idp_leg(&location(&res), username, mfa).await;
    let res = c.get(&cb).send().await.expect("callback");
    assert_eq!(res.status(), 303);
    let to = location(&res);
    (c, to)
}

#[tokio::test]
async fn a_logged_in_user_links_an_identity_to_the_own_account_after_reauthentication() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let mut grace = account(&app, "grace").await;
    let (_, who) = me(&grace.http, &app).await;
    let grace_id = who["user"]["id"].as_i64().expect("id");

    let to = link(&mut grace, "test", "grace-at-idp").await;
    assert_eq!(to, app.url("/settings?oidc_linked=test"));
    let (status, who) = me(&grace.http, &app).await;
    assert_eq!(status, 200);
    assert_eq!(
        who["user"]["id"].as_i64(),
        Some(grace_id),
        "still the same user: a link logs nobody in"
    );
    let ids = identities(&grace).await;
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["subject"], "grace-at-idp");
    assert_eq!(ids[0]["provider"], "test");

    // Linking it again to the same account is no error.
    let to = link(&mut grace, "test", "grace-at-idp").await;
    assert_eq!(to, app.url("/settings?oidc_linked=test"));
    assert_eq!(identities(&grace).await.len(), 1);

    // The linked identity now logs in as grace (no second account was made).
    let (c, to) = provider_login_as(&app, "test", "grace-at-idp", false).await;
    assert_eq!(to, app.url("/app"));
    assert_eq!(me(&c, &app).await.1["user"]["id"].as_i64(), Some(grace_id));

    // That login's tokens are sealed in a domain of their own: the TOTP box (same key) does not
    // open them, the tokens' box does not open a TOTP secret.
    let records = app
        .state
        .sessions
        .store()
        .list_user(grace_id)
        .await
        .expect("records");
    let sealed = records
        .iter()
        .find_map(|r| r.data.get("oidc.tokens").and_then(Value::as_str))
        .expect("the provider login kept its tokens")
        .to_owned();
    let totp_box = app.state.mfa.secrets.clone();
    let tokens_box = totp_box
        .clone()
        .with_domain(vestibule::auth::oidc::TOKENS_DOMAIN);
    assert!(
        totp_box.open(grace_id, &sealed).is_err(),
        "not a TOTP secret"
    );
    let tokens: vestibule::auth::oidc::ProviderTokens =
        serde_json::from_slice(&tokens_box.open(grace_id, &sealed).expect("opens as tokens"))
            .expect("tokens");
    assert_eq!(tokens.subject, "grace-at-idp");
    let totp_sealed = totp_box.seal(grace_id, b"a totp secret").expect("seal");
    assert!(
        tokens_box.open(grace_id, &totp_sealed).is_err(),
        "not tokens"
    );
}

#[tokio::test]
async fn linking_needs_a_recent_login_a_cookie_session_and_a_csrf_token() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let mut grace = account(&app, "grace").await;

    // Not logged in: 401.
    let res = app
        .post_anon("/auth/oidc/test/link", &json!({"return_to": "/"}))
        .await;
    assert_error(res, 401, "not_authenticated").await;

    // No CSRF token: the cookie alone does not start a link.
    let res = grace
        .http
        .post(app.url("/auth/oidc/test/link"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 403, "CSRF refusal");

    // A bearer session: the provider would come back to a browser without it.
    let token = app.bearer_login("grace", PASSWORD).await;
    let res = app
        .with_bearer(reqwest::Method::POST, "/auth/oidc/test/link", &token)
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_error(res, 403, "session_required").await;

    // A foreign return_to and an unknown provider: refused before anything is started.
    let res = start_link(&mut grace, "test", "https://attacker.example/").await;
    assert_error(res, 400, "oidc_return_to_refused").await;
    let res = start_link(&mut grace, "nope", "/").await;
    assert_error(res, 404, "oidc_provider_unknown").await;

    // Eleven minutes after the login (the window is ten): a stolen open session cannot add a
    // way in.
    app.age_auth("grace", 660).await;
    let res = start_link(&mut grace, "test", "/").await;
    assert_error(res, 403, "reauth_required").await;
    assert!(identities(&grace).await.is_empty());
    // The password again: allowed.
    let res = grace
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 200);
    let to = link(&mut grace, "test", "grace-at-idp").await;
    assert_eq!(to, app.url("/settings?oidc_linked=test"));
    let ids = identities(&grace).await;
    assert_eq!(ids.len(), 1);

    // Unlinking is gated the same way.
    let id = ids[0]["id"].as_i64().expect("id");
    app.age_auth("grace", 660).await;
    let res = grace.delete(&format!("/auth/identities/{id}")).await;
    assert_error(res, 403, "reauth_required").await;
    assert_eq!(identities(&grace).await.len(), 1);
    let res = grace
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 200);
    let res = grace.delete(&format!("/auth/identities/{id}")).await;
    assert_eq!(res.status(), 204);
    assert!(identities(&grace).await.is_empty());
}

#[tokio::test]
async fn an_identity_of_another_account_is_not_linked_and_nobody_changes_account() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [cb]})).await else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    // henry signed up through the provider: the identity `henry` is his.
    let (henry, to) = provider_login_as(&app, "test", "henry", false).await;
    assert_eq!(to, app.url("/app"));
    let henry_id = me(&henry, &app).await.1["user"]["id"].as_i64();

    let mut grace = account(&app, "grace").await;
    let grace_id = me(&grace.http, &app).await.1["user"]["id"].as_i64();
    let to = link(&mut grace, "test", "henry").await;
    assert_eq!(
        param(&to, "oidc_error").as_deref(),
        Some("oidc_identity_taken"),
        "{to}"
    );
    assert!(param(&to, "oidc_linked").is_none(), "{to}");
    assert_eq!(
        me(&grace.http, &app).await.1["user"]["id"].as_i64(),
        grace_id,
        "grace is still grace, not henry"
    );
    assert!(identities(&grace).await.is_empty());
    // And the identity still logs in as henry.
    let (c, _) = provider_login_as(&app, "test", "henry", false).await;
    assert_eq!(me(&c, &app).await.1["user"]["id"].as_i64(), henry_id);

    // A link flow whose session logged out meanwhile links nothing and logs nobody in.
    let res = start_link(&mut grace, "test", "/settings").await;
    assert_eq!(res.status(), 200);
    let url = res.json::<Value>().await.expect("json")["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let cb = idp_leg(&url, "grace-elsewhere", false).await;
    let res = grace.post_json("/auth/logout", &json!({})).await;
    assert!(res.status().is_success(), "{}", res.status());
    let res = grace.http.get(&cb).send().await.expect("callback");
    if res.status() == 303 {
        let to = location(&res);
        assert!(param(&to, "oidc_error").is_some(), "{to}");
    } else {
        assert_error(res, 400, "oidc_state_mismatch").await;
    }
    assert_eq!(me(&grace.http, &app).await.0, 401, "logged out stays out");
    let (c, to) = provider_login_as(&app, "test", "grace-elsewhere", false).await;
    assert_eq!(to, app.url("/app"));
    assert_ne!(
        me(&c, &app).await.1["user"]["id"].as_i64(),
        grace_id,
        "the identity was not linked to grace"
    );
}

#[tokio::test]
async fn a_trusted_providers_mfa_stands_in_for_the_second_factor_and_nothing_else_does() {
    let port = free_port();
    let trusted = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    let untrusted = format!("http://127.0.0.1:{port}/auth/oidc/plain/callback");
    let Some(idp) = Idp::start(json!({"redirect_uris": [trusted, untrusted]})).await else {
        return;
    };
    // The same issuer twice: `test` trusts its `amr`, `plain` does not.
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        raw.oidc.provider[0].trust_mfa = true;
        provider(raw, "plain", &idp.issuer, "vestibule", &idp.client_secret);
    })
    .await;
    let mut ivy = account(&app, "ivy").await;
    let (secret, _codes) = crate::mfa::enrol(&mut ivy).await;

    // Linking on an account with a second factor needs the factor proved recently too.
    app.age_auth("ivy", 660).await;
    let res = ivy
        .post_json("/auth/reauth", &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), 200);
    let res = start_link(&mut ivy, "test", "/").await;
    assert_error(res, 403, "mfa_reauth_required").await;
    let res = ivy
        .post_json(
            "/auth/reauth",
            &json!({"password": PASSWORD, "code": crate::mfa::code(&secret, 1)}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let to = link(&mut ivy, "test", "ivy-at-idp").await;
    assert_eq!(to, app.url("/settings?oidc_linked=test"));
    let ivy_id = me(&ivy.http, &app).await.1["user"]["id"].as_i64();

    // Trusted, and the provider says it asked a second factor: logged in, no TOTP asked.
    let (c, to) = provider_login_as(&app, "test", "ivy-at-idp", true).await;
    assert_eq!(to, app.url("/app"), "no second factor asked");
    assert_eq!(me(&c, &app).await.1["user"]["id"].as_i64(), ivy_id);

    // Trusted, but `amr` shows a password only: Vestibule's second factor is due.
    let (c, to) = provider_login_as(&app, "test", "ivy-at-idp", false).await;
    assert_eq!(param(&to, "mfa_required").as_deref(), Some("1"), "{to}");
    assert_eq!(me(&c, &app).await.0, 401, "not logged in before the factor");

    // Not trusted: the provider's second factor does not count.
    let (c, to) = provider_login_as(&app, "plain", "ivy-at-idp", true).await;
    assert_eq!(param(&to, "mfa_required").as_deref(), Some("1"), "{to}");
    assert_eq!(me(&c, &app).await.0, 401, "not logged in before the factor");
}

/// Deleting a user removes what belongs to it — a linked identity, an access token — in one go,
/// ends its sessions, and frees the identity for another account; undoing a signup does too,
/// for an account that never logged in only.
async fn deleting_a_user_takes_its_identities(app: &TestApp) {
    let mut judy = app.signed_up("judy", PASSWORD).await;
    judy.create_token(&json!({"name": "ci"})).await;
    let judy_id = app
        .state
        .users
        .by_username("judy")
        .await
        .expect("db")
        .expect("judy")
        .id;
    let ids = vestibule::auth::oidc::Identities::new(app.state.db.clone());
    ids.link(judy_id, "test", "https://idp.example", "judy-sub", None)
        .await
        .expect("link");

    vestibule::auth::delete_user(&app.state.db, &app.state.sessions, judy_id)
        .await
        .expect("deleted despite the identity and the token");
    assert!(app.state.users.by_id(judy_id).await.expect("db").is_none());
    assert!(
        ids.users_of("https://idp.example", "judy-sub")
            .await
            .expect("db")
            .is_empty(),
        "the identity went with the user"
    );
    assert_eq!(judy.get("/auth/me").await.status(), 401, "sessions ended");
    let e = vestibule::auth::delete_user(&app.state.db, &app.state.sessions, judy_id)
        .await
        .expect_err("gone");
    assert_eq!(e.code(), vestibule::ErrorCode::NotFound);

    // The identity is free: another account can have it.
    app.signed_up("kim", PASSWORD).await;
    let kim = app
        .state
        .users
        .by_username("kim")
        .await
        .expect("db")
        .expect("kim");
    ids.link(kim.id, "test", "https://idp.example", "judy-sub", None)
        .await
        .expect("linked to kim");

    // Undoing a signup takes the identity too; an account that logged in is not undone.
    let username = vestibule::auth::Username::parse("lee").expect("name");
    let lee = app
        .state
        .users
        .create(&username, "!")
        .await
        .expect("create");
    ids.link(lee.id, "test", "https://idp.example", "lee-sub", None)
        .await
        .expect("link");
    app.state.users.undo_signup(lee.id).await.expect("undo");
    assert!(app.state.users.by_id(lee.id).await.expect("db").is_none());
    assert!(
        ids.users_of("https://idp.example", "lee-sub")
            .await
            .expect("db")
            .is_empty()
    );
    app.state.users.undo_signup(kim.id).await.expect("undo");
    assert!(
        app.state.users.by_id(kim.id).await.expect("db").is_some(),
        "kim logged in (signup does): not undone"
    );
}

#[tokio::test]
async fn deleting_a_user_takes_its_identities_on_sqlite() {
    let app = TestApp::spawn().await;
    deleting_a_user_takes_its_identities(&app).await;
}

#[tokio::test]
async fn deleting_a_user_takes_its_identities_on_postgres() {
    let Some((app, _schema)) = crate::services::spawn_on_postgres(|_| {}).await else {
        return;
    };
    deleting_a_user_takes_its_identities(&app).await;
}

#[tokio::test]
async fn claims_missing_from_the_id_token_come_from_userinfo() {
    let port = free_port();
    let cb = format!("http://127.0.0.1:{port}/auth/oidc/test/callback");
    // The provider keeps `email` and `preferred_username` out of the ID token (Core 5.4).
    let Some(idp) =
        Idp::start(json!({"redirect_uris": [cb], "conform_id_token_claims": true})).await
    else {
        return;
    };
    let app = vestibule(port, |raw| {
        provider(raw, "test", &idp.issuer, "vestibule", &idp.client_secret);
        raw.oidc.provider[0].claims.username = "email".into();
    })
    .await;
    let (c, to) = provider_login_as(&app, "test", "olga", false).await;
    assert_eq!(to, app.url("/app"));
    let (_, who) = me(&c, &app).await;
    assert_eq!(
        who["user"]["username"], "olga@example.test",
        "named after the userinfo's e-mail, not the subject"
    );
    let c = TestClient {
        http: c,
        base: app.base.clone(),
        csrf: None,
    };
    let ids = identities(&c).await;
    assert_eq!(ids[0]["email"], "olga@example.test");
    assert_eq!(ids[0]["subject"], "olga");
}
