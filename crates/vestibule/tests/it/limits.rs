//! Rate limits, client addresses behind proxies, and security headers: each limit is hit and
//! refused with 429 + Retry-After, and the owner of an attacked account still gets in.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Response;
use serde_json::json;
use vestibule::config::{RawConfig, RawStore};
use vestibule::ratelimit;

use crate::services;
use crate::support::{COOKIE, PASSWORD, TestApp, assert_error, test_raw_config};

/// Login attempt for `username` with no cookie, from `xff` as a trusted proxy reports it.
async fn attempt(app: &TestApp, username: &str, password: &str, xff: &str) -> Response {
    app.raw_client()
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", xff)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("request")
}

fn retry_after(res: &Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("429 carries Retry-After in seconds")
}

async fn assert_limited(res: Response) {
    let wait = retry_after(&res);
    assert!(wait >= 1, "Retry-After {wait}");
    assert_error(res, 429, "rate_limited").await;
}

fn limits(raw: &mut RawConfig, pairs: &[(&str, &str)]) {
    raw.limits.trusted_proxies = vec!["127.0.0.1".into()];
    for (key, rate) in pairs {
        let r = &mut raw.rate_limits;
        let slot = match *key {
            "login_per_ip" => &mut r.login_per_ip,
            "login_per_user" => &mut r.login_per_user,
            "login_per_device" => &mut r.login_per_device,
            "signup_per_ip" => &mut r.signup_per_ip,
            "password_per_user" => &mut r.password_per_user,
            "token_create_per_user" => &mut r.token_create_per_user,
            "anonymous_sessions_per_ip" => &mut r.anonymous_sessions_per_ip,
            other => panic!("unknown limit {other}"),
        };
        *slot = (*rate).to_owned();
    }
}

#[tokio::test]
async fn a_distributed_brute_force_is_slowed_and_the_owner_still_gets_in() {
    brute_force_is_slowed_and_the_owner_gets_in(|_| {}).await;
}

/// The same attack with the buckets in Redis (the session store is Redis, so the limits are too).
#[tokio::test]
async fn a_distributed_brute_force_is_slowed_with_the_buckets_in_redis() {
    let url = services::redis_url();
    if !services::redis_reachable(&url).await {
        return;
    }
    let prefix = services::random_prefix();
    let _guard = services::RedisKeysGuard {
        urls: vec![url.clone()],
        prefix: prefix.clone(),
    };
    brute_force_is_slowed_and_the_owner_gets_in(|raw| redis_store(raw, &url, &prefix)).await;
    let ttl = key_ttl(&url, &format!("{prefix}rl:login_user:victim")).await;
    assert!(
        (1..=3600).contains(&ttl),
        "the account bucket expires within its horizon (1 h), TTL {ttl}"
    );
}

/// Sessions (and so the rate limits) in the Redis at `url`, under `prefix`, uncached.
fn redis_store(raw: &mut RawConfig, url: &str, prefix: &str) {
    raw.session.store = RawStore::One(url.to_owned());
    raw.session.redis_prefix = prefix.to_owned();
    raw.session.redis_cache = false;
    raw.session.store_timeout = "300ms".into();
}

/// `TTL key` in seconds (-2: no such key).
async fn key_ttl(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut c)
        .await
        .expect("TTL")
}

async fn brute_force_is_slowed_and_the_owner_gets_in(store: impl FnOnce(&mut RawConfig)) {
    let app = TestApp::spawn_with(|raw| {
        store(raw);
        limits(
            raw,
            &[
                ("login_per_ip", "5/min"),
                ("login_per_user", "10/h"),
                ("login_per_device", "5/min"),
            ],
        );
    })
    .await;
    // The owner signed up in this browser: it carries the device cookie from now on.
    let mut owner = app.signed_up("victim", PASSWORD).await;
    assert_eq!(owner.post("/auth/logout").await.status(), 204);

    // 1,000 wrong passwords, each from a different address (a botnet behind our proxy).
    let mut wrong = 0;
    let mut limited = 0;
    for chunk in 0..20u32 {
        let results = join_all((0..50u32).map(|i| {
            let n = chunk * 50 + i;
            let xff = format!("10.{}.{}.{}", n / 65_536, (n / 256) % 256, n % 256);
            let app = &app;
            async move { attempt(app, "victim", "wrong password!", &xff).await }
        }))
        .await;
        for res in results {
            match res.status().as_u16() {
                401 => wrong += 1,
                429 => {
                    limited += 1;
                    assert_limited(res).await;
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    assert_eq!(wrong + limited, 1000);
    // Only the account's burst reached the password check.
    assert!(wrong <= 10, "{wrong} guesses were checked");
    assert!(wrong >= 1, "the first guesses are answered normally");

    // The owner's browser is recognised and has its own budget: the right password works.
    owner.csrf = None;
    owner.login_ok("victim", PASSWORD).await;
    assert_eq!(owner.get("/auth/me").await.status(), 200);

    // A browser the account never saw still waits with the attackers (the documented trade-off).
    let stranger = attempt(&app, "victim", PASSWORD, "192.0.2.50").await;
    assert_limited(stranger).await;
    app.stop().await;
}

/// Two instances on one Redis prefix draw on one account budget: guesses spread over A and B
/// are refused once their total passes the limit, on either instance.
#[tokio::test]
async fn two_instances_share_the_login_budget_through_redis() {
    let url = services::redis_url();
    if !services::redis_reachable(&url).await {
        return;
    }
    let prefix = services::random_prefix();
    let _guard = services::RedisKeysGuard {
        urls: vec![url.clone()],
        prefix: prefix.clone(),
    };
    let spawn = || {
        TestApp::spawn_with(|raw| {
            redis_store(raw, &url, &prefix);
            limits(raw, &[("login_per_user", "6/h")]);
        })
    };
    let (a, b) = (spawn().await, spawn().await);
    let mut answered = 0;
    for i in 0..12u32 {
        let app = if i % 2 == 0 { &a } else { &b };
        let res = attempt(app, "victim", "wrong password!", &format!("10.1.0.{i}")).await;
        match res.status().as_u16() {
            401 => answered += 1,
            429 => assert_limited(res).await,
            other => panic!("unexpected status {other}"),
        }
    }
    // Per instance each would have allowed 6 (12 in all); shared, 6 in all.
    assert_eq!(answered, 6, "the budget is shared");
    assert_limited(attempt(&a, "victim", "wrong password!", "10.1.1.1").await).await;
    assert_limited(attempt(&b, "victim", "wrong password!", "10.1.1.2").await).await;
    // Another account has its own bucket.
    let res = attempt(&b, "someone", "wrong password!", "10.1.1.3").await;
    assert_error(res, 401, "invalid_credentials").await;
    a.stop().await;
    b.stop().await;
}

/// Redis stops: the limits fall back to each instance's memory, so guesses are still refused
/// (never a 5xx from the limiter), and a bounded time each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_per_instance_while_redis_is_down() {
    let Some(mut redis) = services::OwnedRedis::start(&[]).await else {
        return;
    };
    let url = redis.url();
    let app = TestApp::spawn_with(|raw| {
        redis_store(raw, &url, &services::random_prefix());
        limits(raw, &[("login_per_user", "3/h"), ("login_per_ip", "3/h")]);
    })
    .await;
    // Shared while Redis is up: the account's budget is spent there.
    for i in 0..3u32 {
        let res = attempt(&app, "victim", "wrong password!", &format!("10.2.0.{i}")).await;
        assert_error(res, 401, "invalid_credentials").await;
    }
    assert_limited(attempt(&app, "victim", "wrong password!", "10.2.0.9").await).await;
    redis.stop();
    // Down: the in-memory buckets take over (fresh, so a burst of 3 again), per account and
    // per address, and nothing answers 5xx.
    let mut answered = 0;
    for i in 0..10u32 {
        let started = std::time::Instant::now();
        let res = attempt(&app, "victim", "wrong password!", &format!("10.3.0.{i}")).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the limiter hung"
        );
        match res.status().as_u16() {
            401 => answered += 1,
            429 => assert_limited(res).await,
            other => panic!("unexpected status {other} while Redis is down"),
        }
    }
    assert_eq!(answered, 3, "the account is limited locally");
    for i in 0..3u32 {
        let res = attempt(&app, &format!("u{i}"), "wrong password!", "10.4.0.1").await;
        assert_eq!(res.status(), 401);
    }
    assert_limited(attempt(&app, "u9", "wrong password!", "10.4.0.1").await).await;
    // Back: shared again (Redis kept the account's bucket on disk): still refused.
    redis.launch().await.expect("redis restarts");
    tokio::time::sleep(ratelimit::REDIS_RETRY_AFTER + Duration::from_millis(200)).await;
    assert_limited(attempt(&app, "victim", "wrong password!", "10.5.0.1").await).await;
    app.stop().await;
}

#[tokio::test]
async fn after_the_attack_the_account_refills_and_nothing_stays_locked() {
    let app = TestApp::spawn_with(|raw| {
        limits(raw, &[("login_per_user", "3/1s")]);
    })
    .await;
    drop(app.signed_up("carol", PASSWORD).await);
    // All at once, so a slow machine (each guess is an Argon2 hash) cannot let the bucket refill
    // between them.
    let addresses: Vec<String> = (0..20).map(|i| format!("10.0.0.{i}")).collect();
    let guesses = addresses
        .iter()
        .map(|xff| attempt(&app, "carol", "nope nope nope", xff));
    let limited = futures_util::future::join_all(guesses)
        .await
        .iter()
        .filter(|res| res.status() == 429)
        .count();
    assert!(
        limited >= 10,
        "20 simultaneous guesses hit the 3/s account limit ({limited} refused)"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A new browser (no device cookie) gets in once the bucket has refilled: no lock-out.
    let res = attempt(&app, "carol", PASSWORD, "192.0.2.9").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn one_address_is_limited_across_usernames() {
    let app = TestApp::spawn_with(|raw| limits(raw, &[("login_per_ip", "3/h")])).await;
    for i in 0..3 {
        let res = attempt(&app, &format!("user{i}"), "whatever12", "198.51.100.7").await;
        assert_error(res, 401, "invalid_credentials").await;
    }
    assert_limited(attempt(&app, "user9", "whatever12", "198.51.100.7").await).await;
    // Another client is not affected.
    let res = attempt(&app, "user9", "whatever12", "198.51.100.8").await;
    assert_error(res, 401, "invalid_credentials").await;
    // IPv6 clients are grouped per /64: moving inside the /64 does not help.
    for i in 0..3 {
        let res = attempt(&app, "x", "whatever12", &format!("2001:db8:1:2::{i}")).await;
        assert_eq!(res.status(), 401);
    }
    assert_limited(attempt(&app, "x", "whatever12", "2001:db8:1:2:ffff::1").await).await;
    let res = attempt(&app, "x", "whatever12", "2001:db8:1:3::1").await;
    assert_eq!(res.status(), 401, "another /64 is another client");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // No trusted proxy: a client cannot pick its own address with X-Forwarded-For.
    let app = TestApp::spawn_with(|raw| {
        raw.rate_limits.login_per_ip = "3/h".into();
    })
    .await;
    for i in 0..3 {
        let res = attempt(&app, "x", "whatever12", &format!("10.9.9.{i}")).await;
        assert_eq!(res.status(), 401);
    }
    let res = app
        .raw_client()
        .post(app.url("/auth/login"))
        .header("forwarded", "for=10.9.9.200")
        .header("x-forwarded-for", "10.9.9.201")
        .json(&json!({"username": "x", "password": "whatever12"}))
        .send()
        .await
        .expect("request");
    assert_limited(res).await;
}

/// Behind a trusted proxy that appends `X-Forwarded-For` (the test client on loopback plays
/// it), a client sending its own `Forwarded: for=<random>` on every attempt still draws from one
/// budget: only the configured header is read.
#[tokio::test]
async fn a_client_cannot_pick_its_address_with_a_header_the_proxy_does_not_write() {
    let app = TestApp::spawn_with(|raw| limits(raw, &[("login_per_ip", "5/h")])).await;
    let mut statuses = Vec::new();
    for i in 0..8u32 {
        let res = app
            .raw_client()
            .post(app.url("/auth/login"))
            .header(
                "forwarded",
                format!("for=10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256),
            )
            .header("x-real-ip", format!("10.99.0.{i}"))
            .header("x-forwarded-for", "198.51.100.20")
            .json(&json!({"username": format!("u{i}"), "password": "whatever12"}))
            .send()
            .await
            .expect("request");
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // The address the proxy wrote is the key: another one there is another client.
    let res = attempt(&app, "u9", "whatever12", "198.51.100.21").await;
    assert_error(res, 401, "invalid_credentials").await;
}

/// `limits.client_ip_header = "forwarded"`: the proxy's `Forwarded` is read, walked from the
/// right, and a client's `X-Forwarded-For` is ignored.
#[tokio::test]
async fn the_forwarded_header_is_read_when_configured_and_x_forwarded_for_is_then_ignored() {
    let app = TestApp::spawn_with(|raw| {
        limits(raw, &[("login_per_ip", "3/h")]);
        raw.limits.client_ip_header = "Forwarded".into();
    })
    .await;
    let login = |forwarded: String, xff: String| {
        app.raw_client()
            .post(app.url("/auth/login"))
            .header("forwarded", forwarded)
            .header("x-forwarded-for", xff)
            .json(&json!({"username": "x", "password": "whatever12"}))
            .send()
    };
    for i in 0..3 {
        // The client wrote the left entry; the proxy appended the right one.
        let res = login(
            format!("for=10.0.0.{i}, for=203.0.113.5"),
            format!("10.1.0.{i}"),
        )
        .await
        .expect("request");
        assert_eq!(res.status(), 401);
    }
    let res = login("for=10.0.0.99, for=203.0.113.5".into(), "10.1.0.99".into())
        .await
        .expect("request");
    assert_limited(res).await;
    let res = login("for=203.0.113.6".into(), "10.1.0.98".into())
        .await
        .expect("request");
    assert_eq!(res.status(), 401, "another client behind the proxy");
}

#[test]
fn an_unknown_client_ip_header_is_named() {
    let mut raw = test_raw_config();
    raw.limits.client_ip_header = "x-client-ip".into();
    let err = raw.validate().expect_err("refused").to_string();
    assert!(err.contains("limits.client_ip_header"), "{err}");
}

#[tokio::test]
async fn signup_password_change_and_token_creation_are_limited() {
    let app = TestApp::spawn_with(|raw| {
        limits(
            raw,
            &[
                ("signup_per_ip", "2/h"),
                ("password_per_user", "1/h"),
                ("token_create_per_user", "2/h"),
            ],
        );
    })
    .await;
    let mut a = app.signed_up("dave", PASSWORD).await;
    drop(app.signed_up("erin", PASSWORD).await);
    let third = app
        .post_anon(
            "/auth/signup",
            &json!({"username": "frank", "password": PASSWORD}),
        )
        .await;
    assert_limited(third).await;

    for _ in 0..2 {
        let res = a.post_json("/auth/tokens", &json!({"name": "ci"})).await;
        assert_eq!(res.status(), 201);
    }
    assert_limited(a.post_json("/auth/tokens", &json!({"name": "ci"})).await).await;

    // A wrong current password still spends the budget: guessing through this route is slowed too.
    let res = a
        .post_json(
            "/auth/password",
            &json!({"current_password": "not it at all", "new_password": "another good one"}),
        )
        .await;
    assert_error(res, 401, "invalid_credentials").await;
    let res = a
        .post_json(
            "/auth/password",
            &json!({"current_password": PASSWORD, "new_password": "another good one"}),
        )
        .await;
    assert_limited(res).await;
}

/// The `vestibule_device` cookie a signup sets: the whole `Set-Cookie` line and the value.
async fn signup_device_cookie(app: &TestApp, username: &str) -> (String, String) {
    let mut c = app.client();
    let res = c
        .post_json(
            "/auth/signup",
            &json!({"username": username, "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let line = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("vestibule_device="))
        .expect("signup sets the device cookie")
        .to_owned();
    let value = line["vestibule_device=".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    (line, value)
}

async fn login_with_device(app: &TestApp, username: &str, device: &str) -> Response {
    app.raw_client()
        .post(app.url("/auth/login"))
        .header("cookie", format!("vestibule_device={device}"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn the_device_cookie_is_http_only_and_a_forged_one_buys_nothing() {
    let app = TestApp::spawn_with(|raw| {
        limits(
            raw,
            &[("login_per_user", "1/h"), ("login_per_device", "5/h")],
        );
    })
    .await;
    let (line, gina) = signup_device_cookie(&app, "gina").await;
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Lax"),
        "{line}"
    );
    let (_, other) = signup_device_cookie(&app, "other").await;
    // Spend the account's shared budget.
    let _ = attempt(&app, "gina", "wrong wrong", "10.1.1.1").await;
    let (issued, tag) = gina.split_once('.').expect("issued.tag");
    let shifted = format!("{}.{tag}", issued.parse::<i64>().expect("number") - 1);
    for forged in ["1.AAAA", "garbage", other.as_str(), shifted.as_str()] {
        assert_limited(login_with_device(&app, "gina", forged).await).await;
    }
    // The genuine cookie of this account is recognised.
    assert_eq!(login_with_device(&app, "gina", &gina).await.status(), 200);
}

#[tokio::test]
async fn bad_limit_settings_are_named() {
    let mut raw = test_raw_config();
    raw.rate_limits.login_per_ip = "lots".into();
    raw.limits.trusted_proxies = vec!["proxy.internal".into()];
    raw.secret_key = Some(vestibule::config::SecretString("short".into()));
    let err = raw.validate().expect_err("invalid").to_string();
    for key in [
        "rate_limits.login_per_ip",
        "limits.trusted_proxies",
        "secret_key",
    ] {
        assert!(err.contains(key), "{key} not named in {err}");
    }
    assert!(!err.contains("short\""), "the secret is not echoed: {err}");
}

#[tokio::test]
async fn security_headers_on_api_answers_and_the_demo_page() {
    let app = TestApp::spawn().await;
    let c = app.signed_up("hank", PASSWORD).await;
    for res in [
        c.get("/auth/me").await,
        c.get("/auth/csrf").await,
        c.get("/auth/nope").await,
    ] {
        let h = res.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    let page = c.get("/").await;
    let h = page.headers();
    assert_eq!(
        h["cache-control"], "no-cache",
        "the handler's own policy is kept"
    );
    let csp = h["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

/// A built SPA for `static_dir`: an index, a hashed asset and a plain file.
fn spa_dir() -> tempfile::TempDir {
    let site = tempfile::tempdir().expect("tempdir");
    let root = site.path();
    std::fs::create_dir(root.join("assets")).expect("mkdir");
    std::fs::write(root.join("index.html"), "<!doctype html><p>spa</p>").expect("write");
    std::fs::write(root.join("assets/app-BXk3a9Zq.js"), "1").expect("write");
    std::fs::write(root.join("robots.txt"), "ok").expect("write");
    site
}

/// The served SPA's files carry the safe defaults, or the configured headers instead; the
/// server-wide ones stay.
#[tokio::test]
async fn a_served_spa_gets_default_and_configured_headers() {
    let site = spa_dir();
    let dir = site.path().display().to_string();
    let app = TestApp::spawn_with(|raw| raw.static_dir = Some(dir.clone())).await;
    let http = app.raw_client();
    for path in ["/", "/notes/7", "/assets/app-BXk3a9Zq.js", "/robots.txt"] {
        let res = http.get(app.url(path)).send().await.expect("request");
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(
            h["content-security-policy"],
            "frame-ancestors 'self'; base-uri 'self'; object-src 'none'",
            "{path}"
        );
        assert_eq!(h["x-frame-options"], "SAMEORIGIN", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    app.stop().await;

    let app = TestApp::spawn_with(|raw| {
        raw.static_dir = Some(dir.clone());
        let h = &mut raw.static_site.headers;
        h.insert(
            "Content-Security-Policy".into(),
            "default-src 'self'; frame-ancestors 'none'".into(),
        );
        h.insert(
            "Strict-Transport-Security".into(),
            "max-age=63072000; includeSubDomains".into(),
        );
        h.insert(
            "Permissions-Policy".into(),
            "camera=(), geolocation=()".into(),
        );
        h.insert(
            "Referrer-Policy".into(),
            "strict-origin-when-cross-origin".into(),
        );
        h.insert("X-Frame-Options".into(), String::new());
    })
    .await;
    let http = app.raw_client();
    for path in ["/", "/assets/app-BXk3a9Zq.js"] {
        let res = http.get(app.url(path)).send().await.expect("request");
        let h = res.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; frame-ancestors 'none'"
        );
        assert_eq!(
            h["strict-transport-security"],
            "max-age=63072000; includeSubDomains"
        );
        assert_eq!(h["permissions-policy"], "camera=(), geolocation=()");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert!(
            h.get("x-frame-options").is_none(),
            "an empty value removes a default"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    // The cache policy stays the file server's; Vestibule's own answers keep theirs.
    let res = http.get(app.url("/")).send().await.expect("request");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let res = http
        .get(app.url("/auth/csrf"))
        .send()
        .await
        .expect("request");
    assert!(res.headers().get("strict-transport-security").is_none());
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    app.stop().await;
}

#[tokio::test]
async fn bad_static_site_headers_are_named() {
    let mut raw = test_raw_config();
    let h = &mut raw.static_site.headers;
    h.insert("X-Injected".into(), "a\r\nSet-Cookie: s=1".into());
    h.insert("Set-Cookie".into(), "s=1".into());
    h.insert("bad name".into(), "x".into());
    let err = raw.validate().expect_err("invalid").to_string();
    for key in [
        "static_site.headers.X-Injected",
        "static_site.headers.Set-Cookie",
        "static_site.headers.bad name",
    ] {
        assert!(err.contains(key), "{key} not named in {err}");
    }
}

/// A raw TCP connection to the app.
async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the peer closes or `within` passes; true when it closed.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn long_uris_and_big_or_many_headers_get_json_errors() {
    let app = TestApp::spawn_with(|raw| {
        raw.limits.uri_bytes = 1024;
        raw.limits.header_bytes = 8 * 1024;
        raw.limits.max_headers = 40;
    })
    .await;
    let c = app.client();
    let long = format!("/auth/me?q={}", "a".repeat(2000));
    assert_error(c.get(&long).await, 414, "uri_too_long").await;
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .header("cookie", format!("junk={}", "x".repeat(10_000)))
        .send()
        .await
        .expect("request");
    assert_error(res, 431, "headers_too_large").await;
    let mut req = app.raw_client().get(app.url("/auth/me"));
    for i in 0..50 {
        req = req.header(format!("x-h{i}"), "1");
    }
    assert_error(req.send().await.expect("request"), 431, "headers_too_large").await;
    // Far beyond: hyper's own cap answers 431 and drops the connection; the server goes on.
    let res = app
        .raw_client()
        .get(app.url("/auth/me"))
        .header("cookie", "y".repeat(200_000))
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 431);
    }
    assert_eq!(c.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn slowloris_connections_do_not_stop_a_login_and_are_cut_at_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(|raw| {
        raw.limits.header_read_timeout = "1s".into();
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = connect(&app).await;
        s.write_all(b"GET /auth/me HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("partial head");
        slow.push(s);
    }
    // A normal client gets through while 500 connections dangle.
    let mut c = app.signed_up("ivy", PASSWORD).await;
    c.login_ok("ivy", PASSWORD).await;
    assert_eq!(c.get("/auth/me").await.status(), 200);
    // The server hangs up on every one of them once the header timeout passes.
    let mut still_open = 0;
    for s in &mut slow {
        if !closed_within(s, Duration::from_secs(5)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "slow connections left open");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(|raw| {
        raw.limits.header_read_timeout = "1s".into();
    })
    .await;
    let mut s = connect(&app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    // The answer comes, the connection stays for reuse, then the idle timeout closes it.
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn_with(|raw| {
        raw.limits.max_connections = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&app).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn({
        let url = app.url("/healthz");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth connection was served while three were open"
    );
    held.pop();
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot frees")
        .expect("task")
        .expect("request");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_login_beyond_the_session_cap_ends_the_least_recently_used_session() {
    let app = TestApp::spawn_with(|raw| raw.limits.max_sessions_per_user = 3).await;
    let first = app.signed_up("jack", PASSWORD).await;
    // Session times have one-second resolution: make the first one strictly the least recently
    // used (the later logins may share a second; only the first must go).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut c = app.client();
        c.login_ok("jack", PASSWORD).await;
        others.push(c);
    }
    assert_error(first.get("/auth/me").await, 401, "not_authenticated").await;
    for c in &others {
        assert_eq!(c.get("/auth/me").await.status(), 200);
    }
    let list: serde_json::Value = others[2]
        .get("/auth/sessions")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(3));
}

/// The value of the sample `name{…}` whose labels include every `key="value"` of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_routes_statuses_logins_limits_and_the_store() {
    let app = TestApp::spawn_with(|raw| limits(raw, &[("login_per_user", "2/h")])).await;
    let c = app.signed_up("kim", PASSWORD).await;
    let loads_timed = |text: &str| {
        sample(
            text,
            "vestibule_store_duration_seconds_count",
            &[("op", "load")],
        )
        .unwrap_or(0.0)
    };
    let scrape = || async { c.get("/metrics").await.text().await.expect("text") };
    let before = loads_timed(&scrape().await);
    for _ in 0..3 {
        assert_eq!(c.get("/auth/me").await.status(), 200);
    }
    // Answered from the read cache: not store operations, so not timed.
    assert_eq!(loads_timed(&scrape().await), before);
    // A well-formed cookie the cache does not hold: a load that reaches the store.
    let unknown = vestibule::token::SecretToken::generate(vestibule::token::TokenKind::Session);
    let res = reqwest::Client::new()
        .get(app.url("/auth/me"))
        .header("cookie", format!("{COOKIE}={}", unknown.expose()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 401);
    assert_eq!(loads_timed(&scrape().await), before + 1.0);
    let _ = attempt(&app, "kim", "wrong wrong", "10.0.0.1").await;
    let _ = attempt(&app, "kim", "wrong wrong", "10.0.0.2").await;
    let _ = attempt(&app, "kim", "wrong wrong", "10.0.0.3").await;
    let _ = c.delete("/auth/sessions/0123").await;
    let _ = c.get("/no/such/page").await;

    let res = c.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/openmetrics-text")),
    );
    let text = res.text().await.expect("text");
    let requests = "vestibule_http_requests_total";
    let me = [("route", "/auth/me"), ("method", "GET"), ("status", "200")];
    assert_eq!(sample(&text, requests, &me), Some(3.0), "{text}");
    let metrics = [("route", "/metrics"), ("method", "GET"), ("status", "200")];
    assert_eq!(sample(&text, requests, &metrics), Some(3.0), "{text}");
    // Routes are patterns, never ids; unrouted paths are one label.
    let by_pattern = [("route", "/auth/sessions/{id}"), ("method", "DELETE")];
    assert_eq!(sample(&text, requests, &by_pattern), Some(1.0), "{text}");
    assert!(!text.contains("/auth/sessions/0123"), "{text}");
    assert_eq!(
        sample(
            &text,
            requests,
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    let failures = "vestibule_login_failures_total";
    assert_eq!(
        sample(&text, failures, &[("reason", "invalid_credentials")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, failures, &[("reason", "rate_limited")]),
        Some(1.0),
        "{text}"
    );
    let limited = [("reason", "rate_limits.login_per_user")];
    assert_eq!(
        sample(&text, "vestibule_rate_limited_total", &limited),
        Some(1.0)
    );
    let loads = [("op", "load"), ("le", "+Inf")];
    assert!(
        sample(&text, "vestibule_store_duration_seconds_bucket", &loads).is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        sample(&text, "vestibule_sessions", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "vestibule_http_request_duration_seconds_count",
            &[("route", "/auth/me")]
        )
        .is_some()
    );
}

#[tokio::test]
async fn metrics_are_hidden_from_addresses_outside_the_allowlist_and_can_be_off() {
    let app = TestApp::spawn_with(|raw| raw.metrics.allow = vec!["10.0.0.0/8".into()]).await;
    assert_error(app.client().get("/metrics").await, 404, "not_found").await;
    let app = TestApp::spawn_with(|raw| raw.metrics.enabled = false).await;
    assert_error(app.client().get("/metrics").await, 404, "not_found").await;
}

/// Behind a same-host proxy every socket peer is loopback: the allow-list must judge the client
/// the proxy names, like the rate limits do.
#[tokio::test]
async fn metrics_judge_the_client_behind_a_trusted_proxy_not_the_proxy() {
    let app =
        TestApp::spawn_with(|raw| raw.limits.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let scrape = |xff: Option<&'static str>| {
        let mut req = app.raw_client().get(app.url("/metrics"));
        if let Some(v) = xff {
            req = req.header("x-forwarded-for", v);
        }
        req.send()
    };
    let res = scrape(Some("203.0.113.9")).await.expect("request");
    assert_error(res, 404, "not_found").await;
    // A client's own Forwarded cannot claim loopback either.
    let res = app
        .raw_client()
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=127.0.0.1")
        .send()
        .await
        .expect("request");
    assert_error(res, 404, "not_found").await;
    // A scraper on loopback, through the proxy or directly, is allowed.
    assert_eq!(
        scrape(Some("127.0.0.1")).await.expect("request").status(),
        200
    );
    assert_eq!(scrape(None).await.expect("request").status(), 200);
}

#[tokio::test]
async fn anonymous_session_creation_is_capped_per_address() {
    let app = TestApp::spawn_with(|raw| limits(raw, &[("anonymous_sessions_per_ip", "3/h")])).await;
    let anonymous_write = |xff: &'static str| {
        app.raw_client()
            .post(app.url("/demo/counter"))
            .header("x-forwarded-for", xff)
            .send()
    };
    for _ in 0..3 {
        let res = anonymous_write("198.51.100.1").await.expect("request");
        assert_eq!(res.status(), 200);
    }
    let res = anonymous_write("198.51.100.1").await.expect("request");
    assert!(
        res.headers().get("set-cookie").is_none(),
        "no session was created"
    );
    assert_limited(res).await;
    assert_eq!(
        app.session_count().await,
        3,
        "the refused write created nothing"
    );
    // Another address, and a logged-in client, are not affected.
    assert_eq!(
        anonymous_write("198.51.100.2")
            .await
            .expect("request")
            .status(),
        200
    );
    let c = app.signed_up("lee", PASSWORD).await;
    assert_eq!(c.post("/demo/counter").await.status(), 200);
}

/// With Redis (several instances) the device-cookie key must be shared configuration: an unset
/// `secret_key` is warned about; set, it is not.
#[test]
fn an_unset_secret_key_with_a_redis_store_is_warned_about() {
    let mut raw = test_raw_config();
    raw.session.store = RawStore::One("redis://127.0.0.1:6379/0".into());
    let config = raw.clone().validate().expect("valid");
    assert!(
        config.warnings.iter().any(|w| w.contains("secret_key")),
        "{:?}",
        config.warnings
    );
    raw.secret_key = Some(vestibule::config::SecretString(
        "a shared secret of at least thirty-two characters".into(),
    ));
    let config = raw.validate().expect("valid");
    assert!(
        !config.warnings.iter().any(|w| w.contains("secret_key")),
        "{:?}",
        config.warnings
    );
}
