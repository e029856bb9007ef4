//! The revocation matrix: every way of ending sessions × every session store, over real HTTP.
//! Each case logs a "victim" session in, ends it by one path, and replays the victim's cookie
//! on the very next request. The paths are listed once ([`PATHS`]) and every store runs all of
//! them; what a store cannot do by nature (the cookie store ending one session by id, or a
//! replayed cookie after a plain logout) is asserted as documented in docs/SECURITY.md, so the
//! documentation cannot drift from the behaviour. The CLI half is in the CLI test crate
//! (`vestibule-cli/tests/cli/admin.rs`).

use reqwest::StatusCode;
use serde_json::{Value, json};
use vestibule::config::{RawStore, SecretList};
use vestibule::session::{Ended, Revoke};
use vestibule::token::{SecretToken, TokenKind};

use crate::services;
use crate::support::{COOKIE, PASSWORD, TestApp, set_cookie_value};

/// The stores the matrix runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    Sqlite,
    CachedSqlite,
    Redis,
    CachedRedis,
    Postgres,
    CachedPostgres,
    Cookie,
}

/// Every way of ending sessions, written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `POST /auth/logout` by the session itself.
    Logout,
    /// `DELETE /auth/sessions/{id}` by another session of the same user.
    OwnerEndsOther,
    /// `POST /auth/logout-all` from another session.
    LogoutAll,
    /// `POST /auth/password` from another session.
    PasswordChange,
    /// `POST /auth/password/reset` with a token from `vestibule user reset-password`.
    PasswordReset,
    /// `vestibule user disable` (the library function it calls).
    Disable,
    /// `vestibule session revoke ID`.
    AdminOne,
    /// `vestibule session revoke --user NAME`.
    AdminUser,
    /// `vestibule session revoke --all`.
    AdminEveryone,
}

const PATHS: [Path; 9] = [
    Path::Logout,
    Path::OwnerEndsOther,
    Path::LogoutAll,
    Path::PasswordChange,
    Path::PasswordReset,
    Path::Disable,
    Path::AdminOne,
    Path::AdminUser,
    Path::AdminEveryone,
];

/// A server on `store` plus whatever keeps its backing service's data alive (and cleans it up).
struct Server {
    app: TestApp,
    _guard: Option<Box<dyn Send>>,
}

/// Starts a server on `store`; `None` (after the skip message) when its service is unreachable.
async fn spawn(store: Store) -> Option<Server> {
    let redis = |cache: bool| async move {
        let url = services::redis_url();
        if !services::redis_reachable(&url).await {
            return None;
        }
        let prefix = services::random_prefix();
        let guard = services::RedisKeysGuard {
            urls: vec![url.clone()],
            prefix: prefix.clone(),
        };
        let app = TestApp::spawn_with(|raw| {
            raw.session.store = RawStore::One(url);
            raw.session.redis_cache = cache;
            raw.session.redis_prefix = prefix;
        })
        .await;
        Some(Server {
            app,
            _guard: Some(Box::new(guard)),
        })
    };
    let postgres = |name: &'static str| async move {
        let (app, schema) =
            services::spawn_on_postgres(|raw| raw.session.store = RawStore::One(name.into()))
                .await?;
        Some(Server {
            app,
            _guard: Some(Box::new(schema)),
        })
    };
    let local = |name: &'static str| async move {
        Some(Server {
            app: TestApp::spawn_with(|raw| {
                raw.session.store = RawStore::One(name.into());
                if name == "cookie" {
                    use base64::Engine;
                    raw.session.cookie_keys = SecretList(vec![
                        base64::engine::general_purpose::STANDARD.encode([3u8; 32]),
                    ]);
                }
            })
            .await,
            _guard: None,
        })
    };
    match store {
        Store::Memory => local("memory").await,
        Store::Sqlite => local("sqlite").await,
        Store::CachedSqlite => local("cached-sqlite").await,
        Store::Redis => redis(false).await,
        Store::CachedRedis => redis(true).await,
        Store::Postgres => postgres("database").await,
        Store::CachedPostgres => postgres("cached-database").await,
        Store::Cookie => local("cookie").await,
    }
}

/// One session: its cookie value and CSRF token.
#[derive(Debug, Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

async fn login(app: &TestApp, user: &str, password: &str) -> Login {
    let res = app
        .post_anon(
            "/auth/login",
            &json!({"username": user, "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "login {user}");
    let cookie = set_cookie_value(&res, COOKIE).expect("session cookie");
    let body: Value = res.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().expect("csrf").to_owned();
    Login { cookie, csrf }
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    who: &Login,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app
        .raw_client()
        .request(method, app.url(path))
        .header("cookie", format!("{COOKIE}={}", who.cookie))
        .header("x-csrf-token", &who.csrf);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("request")
}

async fn me(app: &TestApp, who: &Login) -> StatusCode {
    send(app, reqwest::Method::GET, "/auth/me", who, None)
        .await
        .status()
}

/// The id of `victim` as the store knows it (a server-side store: the hash of the cookie's token).
fn session_id(victim: &Login) -> Option<vestibule::token::TokenHash> {
    SecretToken::parse(TokenKind::Session, &victim.cookie)
        .ok()
        .map(|t| t.hash())
}

/// What happened to the victim's cookie once the path ran.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Refused on the very next request.
    Ended,
    /// Still opens: the documented behaviour of the cookie store for this path.
    DocumentedReplay,
    /// The path cannot apply to the store and said so (an error, not "ended 0").
    RefusedLoudly,
    /// The path cannot reach the session at all on this store (no session list to pick it from).
    NotReachable,
}

async fn run(app: &TestApp, store: Store, path: Path, n: usize) -> Outcome {
    let user = format!("rev{n}");
    app.signed_up(&user, PASSWORD).await;
    let victim = login(app, &user, PASSWORD).await;
    let actor = login(app, &user, PASSWORD).await;
    assert_eq!(me(app, &victim).await, StatusCode::OK);
    let state = &app.state;
    let uid = state
        .users
        .by_username(&user)
        .await
        .expect("lookup")
        .expect("user")
        .id;
    match path {
        Path::Logout => {
            let res = send(app, reqwest::Method::POST, "/auth/logout", &victim, None).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
        Path::OwnerEndsOther => {
            let res = send(app, reqwest::Method::GET, "/auth/sessions", &actor, None).await;
            let list: Value = res.json().await.expect("json");
            let others: Vec<&str> = list["sessions"]
                .as_array()
                .expect("sessions")
                .iter()
                .filter(|s| s["current"] == json!(false))
                .filter_map(|s| s["id"].as_str())
                .collect();
            if store == Store::Cookie {
                // The cookie store lists the current session only (README, docs/SECURITY.md).
                assert!(others.is_empty(), "{list}");
                return Outcome::NotReachable;
            }
            let victim_id = session_id(&victim).expect("token").to_hex();
            assert!(others.contains(&victim_id.as_str()), "{list}");
            let res = send(
                app,
                reqwest::Method::DELETE,
                &format!("/auth/sessions/{victim_id}"),
                &actor,
                None,
            )
            .await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
        Path::LogoutAll => {
            let res = send(app, reqwest::Method::POST, "/auth/logout-all", &actor, None).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
        Path::PasswordChange => {
            let body =
                json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
            let res = send(
                app,
                reqwest::Method::POST,
                "/auth/password",
                &actor,
                Some(body),
            )
            .await;
            assert_eq!(res.status(), StatusCode::OK);
            // The session that changed it goes on, under its new cookie.
            let kept = Login {
                cookie: set_cookie_value(&res, COOKIE).expect("re-issued cookie"),
                csrf: actor.csrf.clone(),
            };
            assert_eq!(me(app, &kept).await, StatusCode::OK, "the changing session");
        }
        Path::PasswordReset => {
            let (token, _) = vestibule::auth::PasswordResets::new(state.db.clone())
                .issue(uid, std::time::Duration::from_secs(600))
                .await
                .expect("issue");
            let res = app
                .post_anon(
                    "/auth/password/reset",
                    &json!({"token": token.expose(), "new_password": "a brand new passphrase"}),
                )
                .await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
        Path::Disable => {
            vestibule::auth::disable_user(&state.db, &state.sessions, uid)
                .await
                .expect("disable");
        }
        Path::AdminOne => {
            let key = session_id(&victim)
                .unwrap_or_else(|| SecretToken::generate(TokenKind::Session).hash());
            match state.sessions.end(Revoke::One(&key)).await {
                Ok(ended) => assert_eq!(ended, Ended::Deleted(1)),
                Err(e) => {
                    assert_eq!(store, Store::Cookie, "{e}");
                    assert_eq!(e.code(), vestibule::ErrorCode::SessionNotFound);
                    assert!(e.to_string().contains("cannot end one session"), "{e}");
                    assert_eq!(me(app, &victim).await, StatusCode::OK);
                    return Outcome::RefusedLoudly;
                }
            }
        }
        Path::AdminUser => {
            let ended = state
                .sessions
                .end(Revoke::User {
                    user_id: uid,
                    keep: None,
                })
                .await
                .expect("revoke user");
            assert_ne!(ended, Ended::Deleted(0), "{ended}");
        }
        Path::AdminEveryone => {
            let ids = state.users.list().await.expect("users").into_iter();
            let ended = state
                .sessions
                .end_all(ids.map(|u| u.id))
                .await
                .expect("revoke all");
            assert_ne!(ended, Ended::Deleted(0), "{ended}");
        }
    }
    match me(app, &victim).await {
        StatusCode::UNAUTHORIZED => Outcome::Ended,
        StatusCode::OK if store == Store::Cookie && path == Path::Logout => {
            Outcome::DocumentedReplay
        }
        other => panic!("{store:?} × {path:?}: the ended session answered {other}"),
    }
}

async fn matrix(store: Store) {
    let Some(server) = spawn(store).await else {
        return;
    };
    for (n, path) in PATHS.into_iter().enumerate() {
        let outcome = run(&server.app, store, path, n).await;
        let expected = match (store, path) {
            (Store::Cookie, Path::Logout) => Outcome::DocumentedReplay,
            (Store::Cookie, Path::OwnerEndsOther) => Outcome::NotReachable,
            (Store::Cookie, Path::AdminOne) => Outcome::RefusedLoudly,
            _ => Outcome::Ended,
        };
        assert_eq!(outcome, expected, "{store:?} × {path:?}");
    }
    server.app.stop().await;
}

macro_rules! matrix_for {
    ($($name:ident => $store:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            matrix($store).await;
        }
    )*};
}

matrix_for! {
    memory => Store::Memory,
    sqlite => Store::Sqlite,
    cached_sqlite => Store::CachedSqlite,
    redis => Store::Redis,
    cached_redis => Store::CachedRedis,
    postgres => Store::Postgres,
    cached_postgres => Store::CachedPostgres,
    cookie => Store::Cookie,
}
