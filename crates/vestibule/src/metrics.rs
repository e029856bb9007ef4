//! Prometheus metrics at `/metrics` (OpenMetrics text): requests by route and status, latency,
//! live sessions, login failures, rate-limit trips, session-store errors and latency.
//!
//! One registry per server (no process-wide recorder), so several servers in one process — an
//! embedding app, the test suite — each count their own traffic.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::MatchedPath;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::client_ip::TrustedProxies;
use crate::error::{Error, ErrorCode};
use crate::session::{Delta, Record, SessionStore, StoreError};
use crate::token::TokenHash;

mod section;
pub use section::RawMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.1 ms … ~3.3 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    login_failures: Family<ReasonLabels, Counter>,
    rate_limited: Family<ReasonLabels, Counter>,
    store_errors: Family<OpLabels, Counter>,
    store_latency: HistogramFamily<OpLabels>,
    sessions_live: Gauge,
    upstream_errors: Family<ReasonLabels, Counter>,
    email_queue: Gauge,
    email_failures: Family<ReasonLabels, Counter>,
    allow: TrustedProxies,
    /// Handles into `requests` and `latency` by route, so a request seen before is counted
    /// without building (allocating) its label set.
    handles: std::sync::RwLock<std::collections::HashMap<String, RouteHandles>>,
}

/// The counters and histogram of one route (the same metrics the families hold).
#[derive(Debug)]
struct RouteHandles {
    latency: Histogram,
    requests: Vec<(http::Method, u16, Counter)>,
}

/// Bounds on the handle cache: route patterns and statuses are few, but methods are free-form;
/// past these, requests are counted through the families directly (correct, just slower).
const MAX_CACHED_ROUTES: usize = 512;
const MAX_CACHED_PER_ROUTE: usize = 64;

impl Metrics {
    /// A fresh registry; `/metrics` answers only clients in `allow` (loopback by default).
    pub fn new(allow: TrustedProxies) -> Self {
        let mut registry = Registry::with_prefix("vestibule");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = HistogramFamily::<RouteLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route",
            latency.clone(),
        );
        let login_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Refused logins by reason (invalid_credentials, account_disabled, rate_limited)",
            login_failures.clone(),
        );
        let rate_limited = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by limit",
            rate_limited.clone(),
        );
        let store_errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Session-store operations that failed (unavailable or corrupt), by operation",
            store_errors.clone(),
        );
        let store_latency = HistogramFamily::<OpLabels>::new_with_constructor(latency_histogram);
        registry.register(
            "store_duration_seconds",
            "Session-store operation latency, by operation (a read-cache hit is not one)",
            store_latency.clone(),
        );
        let sessions_live = Gauge::default();
        registry.register(
            "sessions",
            "Session records held by the store (read at scrape time)",
            sessions_live.clone(),
        );
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "proxy_upstream_errors",
            "Proxied requests whose upstream failed, by upstream",
            upstream_errors.clone(),
        );
        let email_queue = Gauge::default();
        registry.register(
            "email_outbox_pending",
            "Emails in the outbox waiting to be sent (read by the email worker)",
            email_queue.clone(),
        );
        let email_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "email_failures",
            "Email delivery attempts that failed, by outcome (retry, gave_up)",
            email_failures.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            login_failures,
            rate_limited,
            store_errors,
            store_latency,
            sessions_live,
            upstream_errors,
            email_queue,
            email_failures,
            allow,
            handles: std::sync::RwLock::default(),
        }
    }

    /// Counts a refused login.
    pub fn login_failed(&self, reason: &str) {
        self.login_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a rate-limit refusal of `limit` (its config key).
    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited
            .get_or_create(&ReasonLabels {
                reason: limit.to_owned(),
            })
            .inc();
    }

    /// Counts a failed upstream of the proxy.
    pub fn upstream_failed(&self, upstream: &str) {
        self.upstream_errors
            .get_or_create(&ReasonLabels {
                reason: upstream.to_owned(),
            })
            .inc();
    }

    /// Sets the number of emails waiting in the outbox.
    pub fn email_pending(&self, n: i64) {
        self.email_queue.set(n);
    }

    /// Counts a failed email delivery attempt (`retry` or `gave_up`).
    pub fn email_failed(&self, outcome: &str) {
        self.email_failures
            .get_or_create(&ReasonLabels {
                reason: outcome.to_owned(),
            })
            .inc();
    }

    fn observe(&self, route: &str, method: &http::Method, status: u16, start: Instant) {
        let seconds = start.elapsed().as_secs_f64();
        if let Ok(handles) = self.handles.read()
            && let Some(h) = handles.get(route)
            && let Some((_, _, counter)) = h
                .requests
                .iter()
                .find(|(m, s, _)| *s == status && m == method)
        {
            counter.inc();
            h.latency.observe(seconds);
            return;
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.as_str().to_owned(),
                status,
            })
            .clone();
        let latency = self
            .latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .clone();
        counter.inc();
        latency.observe(seconds);
        if let Ok(mut handles) = self.handles.write() {
            if handles.len() >= MAX_CACHED_ROUTES && !handles.contains_key(route) {
                return;
            }
            let h = handles
                .entry(route.to_owned())
                .or_insert_with(|| RouteHandles {
                    latency,
                    requests: Vec::new(),
                });
            if h.requests.len() < MAX_CACHED_PER_ROUTE
                && !h
                    .requests
                    .iter()
                    .any(|(m, s, _)| *s == status && m == method)
            {
                h.requests.push((method.clone(), status, counter));
            }
        }
    }

    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics`: 404 when metrics are off or the client is outside `metrics.allow` (the
/// endpoint is not advertised). `client` is the address the rate limits see (`client_ip`), not
/// the socket peer: behind a same-host proxy every peer is loopback, which the default
/// allow-list admits.
pub(crate) async fn answer(
    metrics: Option<&Metrics>,
    client: Option<std::net::IpAddr>,
    store: &dyn SessionStore,
) -> Response {
    let Some(metrics) = metrics.filter(|m| client.is_some_and(|ip| m.allow.contains(ip))) else {
        return Error::new(ErrorCode::NotFound, "no such endpoint").into_response();
    };
    match store.count().await {
        Ok(n) => {
            metrics
                .sessions_live
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count sessions"),
    }
    match metrics.render() {
        Ok(body) => {
            let mut res = body.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        Err(e) => Error::internal(e).into_response(),
    }
}

impl Metrics {
    /// Records one answered request: its route, method, status and latency. The route is the
    /// matched pattern (`/auth/sessions/{id}`, never the id itself), which the front service
    /// takes from the request's [`MatchedPath`] (it runs inside the router, after the match),
    /// or the upstream label a proxied response carries ([`tag_route`]); requests no route
    /// matched count as `unmatched`. Called by the front service (`server/front.rs`) for every
    /// response.
    ///
    /// Why not a `route_layer` copying the pattern onto the response (what this used until
    /// 2026-12-06): each layer axum applies per route is one more boxed service cloned on every
    /// request; reading the match in the front took `/auth/me` from 48,235 to 46,671
    /// instructions (callgrind, bench/RESULTS.md, issue 20).
    pub(crate) fn record(
        &self,
        res: &Response,
        method: &http::Method,
        matched: Option<&MatchedPath>,
        start: Instant,
    ) {
        let route = match res.extensions().get::<UpstreamTag>() {
            Some(UpstreamTag(label)) => label,
            None => matched.map_or("unmatched", MatchedPath::as_str),
        };
        self.observe(route, method, res.status().as_u16(), start);
    }
}

/// The route label of a proxied response for [`Metrics::record`]: the upstream prefix
/// (`proxy /api`). The gateway is the router's fallback, so it has no [`MatchedPath`].
#[derive(Debug, Clone)]
struct UpstreamTag(Arc<str>);

/// Labels a proxied response with its upstream's label (`proxy /api`, built once per upstream).
pub(crate) fn tag_route<B>(res: &mut axum::http::Response<B>, label: &Arc<str>) {
    res.extensions_mut().insert(UpstreamTag(label.clone()));
}

/// Times every operation of the wrapped store and counts its failures. `NotFound` and
/// `Collision` are answers, not failures.
#[derive(Debug)]
pub(crate) struct MeteredStore {
    inner: Arc<dyn SessionStore>,
    metrics: Arc<Metrics>,
    /// Each operation's latency histogram, looked up in the family at its first use and kept:
    /// `load` runs on every request, and the family lookup (a lock, a hash of the label set)
    /// cost more than the cached load it timed. Filled lazily so `/metrics` still lists only
    /// operations that ran.
    latency: [std::sync::OnceLock<Histogram>; StoreOp::COUNT],
}

/// The timed store operations (the `op` label), an index into [`MeteredStore`]'s handles.
#[derive(Debug, Clone, Copy)]
enum StoreOp {
    Create,
    Load,
    LoadLatest,
    Save,
    Delete,
    ListUser,
    DeleteUser,
    Revoke,
    DeleteExpired,
    Ping,
}

impl StoreOp {
    const COUNT: usize = 10;

    fn label(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Load => "load",
            Self::LoadLatest => "load_latest",
            Self::Save => "save",
            Self::Delete => "delete",
            Self::ListUser => "list_user",
            Self::DeleteUser => "delete_user",
            Self::Revoke => "revoke",
            Self::DeleteExpired => "delete_expired",
            Self::Ping => "ping",
        }
    }
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn SessionStore>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            metrics,
            latency: Default::default(),
        }
    }

    async fn timed<T>(
        &self,
        op: StoreOp,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let out = fut.await;
        let labels = OpLabels { op: op.label() };
        self.latency[op as usize]
            .get_or_init(|| self.metrics.store_latency.get_or_create(&labels).clone())
            .observe(start.elapsed().as_secs_f64());
        if matches!(
            out,
            Err(StoreError::Unavailable(_) | StoreError::Corrupt(_))
        ) {
            self.metrics.store_errors.get_or_create(&labels).inc();
        }
        out
    }
}

#[async_trait]
impl SessionStore for MeteredStore {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        self.timed(StoreOp::Create, self.inner.create(record)).await
    }
    fn cached(&self, key: &TokenHash) -> Option<Arc<Record>> {
        // A cache hit is not a store operation: `load` times the reads that reach the store.
        self.inner.cached(key)
    }
    async fn load(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        self.timed(StoreOp::Load, self.inner.load(key)).await
    }
    async fn load_latest(&self, key: &TokenHash) -> Result<Option<Arc<Record>>, StoreError> {
        self.timed(StoreOp::LoadLatest, self.inner.load_latest(key))
            .await
    }
    async fn save(&self, key: &TokenHash, delta: &Delta) -> Result<Arc<Record>, StoreError> {
        self.timed(StoreOp::Save, self.inner.save(key, delta)).await
    }
    async fn delete(&self, key: &TokenHash) -> Result<bool, StoreError> {
        self.timed(StoreOp::Delete, self.inner.delete(key)).await
    }
    async fn list_user(&self, user_id: i64) -> Result<Vec<Record>, StoreError> {
        self.timed(StoreOp::ListUser, self.inner.list_user(user_id))
            .await
    }
    async fn delete_user(
        &self,
        user_id: i64,
        keep: Option<&TokenHash>,
    ) -> Result<Vec<TokenHash>, StoreError> {
        self.timed(StoreOp::DeleteUser, self.inner.delete_user(user_id, keep))
            .await
    }
    async fn revoke(
        &self,
        what: crate::session::Revoke<'_>,
    ) -> Result<crate::session::Ended, StoreError> {
        self.timed(StoreOp::Revoke, self.inner.revoke(what)).await
    }
    async fn delete_expired(&self) -> Result<u64, StoreError> {
        self.timed(StoreOp::DeleteExpired, self.inner.delete_expired())
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::Ping, self.inner.ping()).await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }
    async fn try_lock(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<crate::session::SharedLock, StoreError> {
        self.inner.try_lock(name, ttl).await
    }
    async fn unlock(
        &self,
        name: &str,
        lock: &crate::session::SharedLock,
    ) -> Result<(), StoreError> {
        self.inner.unlock(name, lock).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metered wrapper forwards `load_latest` to its inner store's, not to its `load`:
    /// behind it sits the read cache, whose `load` may answer a stale copy.
    #[tokio::test]
    async fn the_metered_store_forwards_load_latest_past_the_cache() {
        use crate::session::stores::{CachedStore, MemoryStore};
        let durable = MemoryStore::new(100);
        let cached: Arc<dyn SessionStore> = Arc::new(CachedStore::new(durable.clone(), 100));
        let metered = MeteredStore::new(cached, Arc::new(Metrics::new(TrustedProxies::default())));
        let t = crate::session::now();
        let key = crate::token::SecretToken::generate(crate::token::TokenKind::Session).hash();
        let mut record = Record {
            key,
            user_id: Some(1),
            user: None,
            data: serde_json::Map::new(),
            created_at: t,
            last_seen: t,
            expires_at: t + 60,
            absolute_expires_at: t + 120,
            user_agent: None,
        };
        record.data.insert("v".into(), serde_json::json!(1));
        metered.create(&record).await.expect("create");
        assert!(metered.load(&key).await.expect("load").is_some());
        let mut delta = Delta {
            last_seen: t,
            expires_at: t + 60,
            ..Delta::default()
        };
        delta.set.insert("v".into(), serde_json::json!(2));
        durable
            .save(&key, &delta)
            .await
            .expect("write behind the cache");
        let v = |r: Option<Arc<Record>>| r.expect("exists").data["v"].clone();
        assert_eq!(
            v(metered.load(&key).await.expect("load")),
            serde_json::json!(1)
        );
        assert_eq!(
            v(metered.load_latest(&key).await.expect("latest")),
            serde_json::json!(2)
        );
    }

    fn line<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
        text.lines().find(|l| l.contains(needle))
    }

    #[test]
    fn cached_route_handles_count_into_the_same_families() {
        let m = Metrics::new(TrustedProxies::default());
        let start = Instant::now();
        for _ in 0..3 {
            m.observe("/auth/me", &http::Method::GET, 200, start);
        }
        m.observe("/auth/me", &http::Method::GET, 401, start);
        m.observe("/auth/me", &http::Method::POST, 200, start);
        m.observe("proxy /api", &http::Method::GET, 200, start);
        let text = m.render().expect("render");
        let get_200 =
            line(&text, r#"route="/auth/me",method="GET",status="200""#).expect("get 200");
        assert!(get_200.ends_with(" 3"), "{get_200}");
        for needle in [
            r#"route="/auth/me",method="GET",status="401""#,
            r#"route="/auth/me",method="POST",status="200""#,
            r#"route="proxy /api",method="GET",status="200""#,
        ] {
            let l = line(&text, needle).expect(needle);
            assert!(l.ends_with(" 1"), "{l}");
        }
        let count = line(&text, r#"duration_seconds_count{route="/auth/me"}"#).expect("latency");
        assert!(count.ends_with(" 5"), "{count}");
    }

    #[test]
    fn the_handle_cache_is_bounded_per_route() {
        let m = Metrics::new(TrustedProxies::default());
        let start = Instant::now();
        for status in 100..(100 + 2 * MAX_CACHED_PER_ROUTE as u16) {
            m.observe("/x", &http::Method::GET, status, start);
            m.observe("/x", &http::Method::GET, status, start);
        }
        let cached = m.handles.read().expect("lock")["/x"].requests.len();
        assert_eq!(cached, MAX_CACHED_PER_ROUTE);
        let text = m.render().expect("render");
        let last = format!(r#"status="{}""#, 100 + 2 * MAX_CACHED_PER_ROUTE as u16 - 1);
        let l = line(&text, &last).expect("uncached status counted");
        assert!(l.ends_with(" 2"), "{l}");
    }
}
