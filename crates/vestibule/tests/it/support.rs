//! Fixtures shared by every test: a real server on a random port, HTTP helpers, assertions.

use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vestibule::config::{Config, RawConfig, RawRateLimits};
use vestibule::server::{App, AppState};

/// A running server with its own temporary database.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    // Keeps the temporary directory alive as long as the app.
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// A raw configuration for tests: random port, signup on, demo mode on.
pub fn test_raw_config() -> RawConfig {
    let mut raw = RawConfig {
        listen: "127.0.0.1:0".into(),
        ..RawConfig::default()
    };
    raw.auth.signup = true;
    // The demo counter (`/demo/counter`) is the tests' plain session-writing route.
    raw.demo = true;
    raw.csrf.trusted_origins = vec!["http://localhost:3000".into()];
    // Tests log in far more often than people do; `limits.rs` turns the limits back on.
    raw.rate_limits = RawRateLimits::off();
    raw
}

impl TestApp {
    /// Starts a server with the test defaults.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` adjusts the raw configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut RawConfig)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::spawn_in(dir, tweak).await
    }

    /// Starts a server whose database lives in `dir` (to restart on the same data).
    pub async fn spawn_in(dir: Arc<tempfile::TempDir>, tweak: impl FnOnce(&mut RawConfig)) -> Self {
        let db_path = dir.path().join("vestibule.db");
        let mut raw = test_raw_config();
        raw.database_url = db_path.display().to_string();
        tweak(&mut raw);
        let config: Config = raw.validate().expect("valid test config");
        let app = App::build(config).await.expect("app builds");
        let port = app.local_addr().expect("bound").port();
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            state,
            dir,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser-like client with its own cookie jar.
    pub fn client(&self) -> TestClient {
        TestClient {
            http: Client::builder()
                .cookie_store(true)
                .user_agent("vestibule-tests")
                .build()
                .expect("client"),
            base: self.base.clone(),
            csrf: None,
        }
    }

    /// A client without a cookie jar, for sending hand-made `Cookie` headers.
    pub fn raw_client(&self) -> Client {
        Client::builder().build().expect("client")
    }

    /// Signs a new user up through the API and returns the logged-in client.
    pub async fn signed_up(&self, username: &str, password: &str) -> TestClient {
        let mut c = self.client();
        let res = c
            .post_json(
                "/auth/signup",
                &json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.expect("json");
        c.csrf = body["csrf_token"].as_str().map(str::to_owned);
        c
    }

    /// Records in the session store.
    pub async fn session_count(&self) -> u64 {
        self.state.sessions.store().count().await.expect("count")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A client that keeps cookies and the last CSRF token, like the JS client will.
pub struct TestClient {
    pub http: Client,
    pub base: String,
    pub csrf: Option<String>,
}

impl TestClient {
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = &self.csrf {
            h.insert(
                "x-csrf-token",
                HeaderValue::from_str(t).expect("token header"),
            );
        }
        h
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    /// POSTs JSON with the current CSRF token, and remembers any new token in the answer.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .headers(self.headers())
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Creates a personal access token (`POST /auth/tokens`, asserting 201) and returns its
    /// secret.
    pub async fn create_token(&mut self, body: &Value) -> String {
        let res = self.post_json("/auth/tokens", body).await;
        assert_eq!(res.status(), 201);
        let created: Value = res.json().await.expect("json");
        created["token"].as_str().expect("token").to_owned()
    }

    pub async fn post(&self, path: &str) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .headers(self.headers())
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .headers(self.headers())
            .send()
            .await
            .expect("request")
    }

    /// Logs in and keeps the CSRF token.
    pub async fn login(&mut self, username: &str, password: &str) -> Response {
        self.post_json(
            "/auth/login",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs in, asserts 200 and stores the token.
    pub async fn login_ok(&mut self, username: &str, password: &str) -> Value {
        let res = self.login(username, password).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        self.csrf = body["csrf_token"].as_str().map(str::to_owned);
        body
    }

    /// Refreshes the CSRF token from `/auth/csrf`.
    pub async fn refresh_csrf(&mut self) {
        let body: Value = self.get("/auth/csrf").await.json().await.expect("json");
        self.csrf = body["csrf_token"].as_str().map(str::to_owned);
    }
}

/// Asserts an error response: status, JSON `code`, and a non-empty message.
pub async fn assert_error(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(
        res.status().as_u16(),
        status,
        "status for expected code {code}"
    );
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("hint").is_some(), "{body}");
    body
}

/// Asserts an RFC 6750 bearer error: the `WWW-Authenticate` challenge names `rfc_error`, and the
/// body has our `code`.
pub async fn assert_bearer_error(res: Response, status: u16, rfc_error: &str, code: &str) {
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        challenge.contains(&format!("error=\"{rfc_error}\"")),
        "{challenge}"
    );
    assert_error(res, status, code).await;
}

/// The session cookie value set by a response, if any.
pub fn set_cookie_value(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            v[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned()
        })
}

/// All `Set-Cookie` headers of a response.
pub fn set_cookies(res: &Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

pub const COOKIE: &str = "vestibule_session";
pub const PASSWORD: &str = "correct horse battery";

/// Serves any router on a random loopback port; the server stops with the runtime.
pub async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

impl TestApp {
    /// Logs in with the bearer transport and returns the session token.
    pub async fn bearer_login(&self, username: &str, password: &str) -> String {
        let body = json!({"username": username, "password": password, "transport": "bearer"});
        let res = self.post_anon("/auth/login", &body).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers().get("set-cookie").is_none(),
            "bearer login sets no cookie"
        );
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A JSON POST with no cookie and no credential.
    pub async fn post_anon(&self, path: &str, body: &Value) -> Response {
        self.raw_client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A request with `Authorization: Bearer <token>` and no cookies.
    pub fn with_bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.raw_client()
            .request(method, self.url(path))
            .header("authorization", format!("Bearer {token}"))
    }
}

impl TestApp {
    /// Moves the password proof (and the second-factor proof) of every session of `username`
    /// `secs` into the past, as if the login happened that long ago (the test hook for
    /// `auth.reauth_window`).
    pub async fn age_auth(&self, username: &str, secs: i64) {
        let user = self
            .state
            .users
            .by_username(username)
            .await
            .expect("lookup")
            .expect("user exists");
        let store = self.state.sessions.store();
        let records = store.list_user(user.id).await.expect("list");
        assert!(!records.is_empty(), "{username} has sessions");
        for r in records {
            let mut su = r.user.clone().expect("a logged-in session");
            su.auth_time -= secs;
            let su = su.to_value();
            let mut delta = vestibule::session::Delta {
                last_seen: r.last_seen,
                expires_at: r.expires_at,
                ..Default::default()
            };
            delta
                .set
                .insert(vestibule::session::AUTH_USER_KEY.to_owned(), su);
            // The second-factor proof, when there is one, ages with the password's.
            let factor_key = vestibule::auth::reauth::FACTOR_PROOF_KEY;
            if let Some(mut proof) = r.data.get(factor_key).cloned() {
                proof["at"] = json!(proof["at"].as_i64().expect("at") - secs);
                delta.set.insert(factor_key.to_owned(), proof);
            }
            store.save(&r.key, &delta).await.expect("save");
        }
    }
}

/// Log lines written while a test runs, for tests of what is logged (audit events, refusals).
/// The subscriber is the current thread's: `#[tokio::test]`'s runtime is single-threaded, so the
/// server a test spawns logs to it too.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures INFO and above on this thread until the guard is dropped.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}
