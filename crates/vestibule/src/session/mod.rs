//! Server-side sessions, the analogue of Django's `request.session`.
//!
//! The cookie holds only an opaque token ([`crate::token`]); the data lives in a [`SessionStore`]
//! under the token's hash. Sessions are lazy: nothing is loaded until a handler asks, nothing is
//! stored and no cookie is sent until a handler writes, and a request that only reads causes no
//! store write (beyond a throttled expiry extension). Each request saves only the keys it changed.
//!
//! With the stateless cookie backend ([`stores::CookieSessions`], `session.store = "cookie"`) the
//! same code paths run, but the record is opened from the cookie instead of loaded, and the commit
//! re-seals it into the `Set-Cookie` instead of saving a delta; see [`SessionManager::with_cookie_sessions`].

mod config;
mod layer;
mod record;
mod section;
mod store;
pub mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

pub use self::config::{
    CookieConfig, DEFAULT_ANONYMOUS_TIMEOUT, DEFAULT_COOKIE_NAME, SessionConfig,
};
pub(crate) use self::layer::credential_from_headers;
pub use self::layer::{NO_TOUCH_HEADER, SessionLayer, SessionService};
pub use self::record::{Delta, Record, UnixTime, now};
pub use self::section::{Lifetimes, RawSession, SessionSection};
pub use self::store::{Ended, Revoke, SessionStore, StoreError, revoke_by_deleting};
use crate::auth::AccessTokens;
use crate::error::{Error, ErrorCode};
use crate::token::{SecretToken, TokenHash, TokenKind};

/// Longest `User-Agent` kept with a session; the rest is cut (it is only shown in session lists).
const MAX_USER_AGENT: usize = 256;

/// Reserved data key holding the logged-in user (like Django's `_auth_user_id`).
pub const AUTH_USER_KEY: &str = "_auth_user";

/// The user a session is logged in as, cached in the session so `/auth/me` needs no user lookup.
/// Disabling a user or changing a password deletes the user's sessions, so this never goes stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// User id.
    pub id: i64,
    /// Username at login time.
    pub username: String,
    /// When the session proved the password (Unix seconds).
    pub auth_time: UnixTime,
    /// How the session's token travels.
    #[serde(default)]
    pub transport: Transport,
}

/// How a request's credential travels, which decides CSRF, cookies and what a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The session cookie (an ambient credential: CSRF checks apply).
    #[default]
    Cookie,
    /// A session token in `Authorization: Bearer` (no cookie, no CSRF).
    Bearer,
    /// A personal access token in `Authorization: Bearer`: a user, scopes, and no session data.
    AccessToken,
}

/// The credential [`SessionLayer`] found on a request.
#[derive(Debug)]
pub(crate) enum Credential {
    /// No usable credential; `had_cookie` when a session cookie was present but malformed.
    None { had_cookie: bool },
    /// A well-formed session cookie, and any further ones of the same name (see
    /// [`pick_live`]: the one that loads a live session is used, not merely the first).
    Cookie(SecretToken, Vec<SecretToken>),
    /// A well-formed session token in `Authorization: Bearer`.
    Bearer(SecretToken),
    /// A well-formed access token in `Authorization: Bearer`.
    AccessToken(SecretToken),
    /// The sealed session cookies (the cookie backend), not yet opened, in the order sent.
    Sealed(Vec<String>),
}

/// The store plus the session settings: what [`SessionLayer`] needs to build a [`Session`] per
/// request. One `Arc` inside, since it is cloned for every request.
#[derive(Debug, Clone)]
pub struct SessionManager(Arc<ManagerParts>);

/// What a [`SessionManager`] holds.
#[derive(Debug, Clone)]
pub struct ManagerParts {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) config: Arc<SessionConfig>,
    pub(crate) access_tokens: Option<AccessTokens>,
    pub(crate) anonymous_limit: Option<AnonymousLimit>,
    /// The stateless cookie backend, when `session.store = "cookie"`.
    pub(crate) sealed: Option<Arc<stores::CookieSessions>>,
}

/// The cap on sessions created for anonymous clients (a handler writing to the session of a
/// client that is not logged in), per client address: a flood of cookie-less writes cannot fill
/// the store.
#[derive(Debug, Clone)]
pub(crate) struct AnonymousLimit {
    pub(crate) budget: Arc<dyn AddressBudget>,
    pub(crate) proxies: crate::client_ip::TrustedProxies,
}

/// A budget per client address for creating anonymous sessions, implemented by the rate
/// limits (`ratelimit::Limiter`): a trait here so that sessions stay below the rate limits in
/// the layering, as `Generations` does for the user store.
pub trait AddressBudget: std::fmt::Debug + Send + Sync {
    /// Takes one from `ip`'s budget, or answers the refusal (429 with `Retry-After`).
    ///
    /// # Errors
    /// `rate_limited`, naming `config_key`.
    fn take(&self, ip: std::net::IpAddr, config_key: &str) -> Result<(), Error>;
    /// Forgets addresses that have been idle long enough to have a full budget again.
    fn purge(&self);
}

impl std::ops::Deref for SessionManager {
    type Target = ManagerParts;

    fn deref(&self) -> &ManagerParts {
        &self.0
    }
}

impl SessionManager {
    /// A manager over `store` with `config`.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig) -> Self {
        Self(Arc::new(ManagerParts {
            store,
            config: Arc::new(config),
            access_tokens: None,
            anonymous_limit: None,
            sealed: None,
        }))
    }

    /// Keeps sessions in the cookie itself, sealed by `backend` (`session.store = "cookie"`):
    /// nothing is stored server-side, so the store becomes a [`stores::StatelessStore`] that
    /// holds nothing and ends sessions by bumping `backend`'s generations. What this cannot do
    /// (revoke one session, list sessions) is in the README.
    pub fn with_cookie_sessions(mut self, backend: stores::CookieSessions) -> Self {
        let parts = Arc::make_mut(&mut self.0);
        parts.store = Arc::new(stores::StatelessStore::new(backend.generations.clone()));
        parts.sealed = Some(Arc::new(backend));
        self
    }

    /// Whether sessions live in the cookie (no server-side record to list or revoke).
    pub fn is_stateless(&self) -> bool {
        self.sealed.is_some()
    }

    /// Caps how many sessions anonymous clients may create per address (the address taken as
    /// the rate limits take it: see [`crate::client_ip`]).
    pub fn with_anonymous_limit(
        mut self,
        budget: Arc<dyn AddressBudget>,
        proxies: crate::client_ip::TrustedProxies,
    ) -> Self {
        Arc::make_mut(&mut self.0).anonymous_limit = Some(AnonymousLimit { budget, proxies });
        self
    }

    /// Forgets idle keys of the anonymous-session limit.
    pub fn purge_limits(&self) {
        if let Some(l) = &self.anonymous_limit {
            l.budget.purge();
        }
    }

    /// Also accept personal access tokens (`Authorization: Bearer vpat_…`) from `tokens`.
    pub fn with_access_tokens(mut self, tokens: AccessTokens) -> Self {
        Arc::make_mut(&mut self.0).access_tokens = Some(tokens);
        self
    }

    /// The store, for administrative operations (listing, revoking a user's sessions).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
}

/// Ends sessions: the one function every way of ending them goes through — logout (the current
/// session), ending one of one's sessions, logout everywhere, password change and reset,
/// disabling a user, and the administrator's `vestibule session revoke`. Each store implements
/// [`SessionStore::revoke`]: the server-side stores delete records, the cookie store bumps the
/// user's generation and refuses to end one session by id (an error, never "ended 0").
///
/// # Errors
/// `store_unavailable`, or `session_not_found` when the store cannot end one session by id.
pub async fn end_sessions(store: &dyn SessionStore, what: Revoke<'_>) -> Result<Ended, Error> {
    Ok(store.revoke(what).await?)
}

/// Ends every session of every user in `user_ids` (the administrator's "everyone": the stores
/// have no user table, so the caller lists the users). Each user goes through
/// [`end_sessions`]; anonymous sessions hold no account and are left to expire.
///
/// # Errors
/// As [`end_sessions`]; users before the failing one are already done.
pub async fn end_all_sessions(
    store: &dyn SessionStore,
    user_ids: impl IntoIterator<Item = i64>,
) -> Result<Ended, Error> {
    let mut total = Ended::Deleted(0);
    for user_id in user_ids {
        total = total.and(
            end_sessions(
                store,
                Revoke::User {
                    user_id,
                    keep: None,
                },
            )
            .await?,
        );
    }
    Ok(total)
}

/// What the cookie must become when the response leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CookieAction {
    Keep,
    Set,
    Remove,
}

#[derive(Debug)]
struct State {
    loaded: bool,
    /// The token of the current record (the cookie's, or a new one after rotation).
    token: Option<SecretToken>,
    record: Option<Arc<Record>>,
    /// Changes not yet saved: `Some` = set, `None` = removed.
    pending: BTreeMap<String, Option<Value>>,
    cookie: CookieAction,
    no_touch: bool,
    /// A bearer session token that matched no live session: every access answers 401.
    invalid_bearer: bool,
    /// The resolved owner of an access token (resolved once per request).
    principal: Option<SessionUser>,
    /// The sealed cookies of the request, until they are opened (cookie backend).
    sealed_values: Vec<String>,
    /// Further session cookies of the same name as `token`, until the session loads.
    other_tokens: Vec<SecretToken>,
    /// The user and generation the opened sealed session was issued under (cookie backend).
    generation: Option<(i64, u64)>,
}

#[derive(Debug)]
struct Inner {
    manager: SessionManager,
    /// The request's start: one clock read serves every expiry decision of the request.
    started: UnixTime,
    user_agent: Option<HeaderValue>,
    had_cookie: bool,
    transport: Transport,
    /// The access token of an [`Transport::AccessToken`] request.
    access_token: Option<SecretToken>,
    /// Whether the method writes (POST, PUT, PATCH, DELETE…), for access-token scopes.
    unsafe_method: bool,
    /// The client's address group, when the anonymous-session limit needs it.
    client_ip: Option<std::net::IpAddr>,
    /// The request's sealed session was refused for an older generation (cookie backend): a
    /// handler that needs a user answers 401 `session_expired`, not `not_authenticated`.
    revoked: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
}

/// The session of the current request. Cheap to clone; every clone is the same session.
///
/// Take it as an extractor in any handler behind [`SessionLayer`]:
///
/// ```
/// use vestibule::session::Session;
///
/// async fn counter(session: Session) -> Result<String, vestibule::Error> {
///     let n: u64 = session.get("counter").await?.unwrap_or(0) + 1;
///     session.insert("counter", n).await?;
///     Ok(n.to_string())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl Session {
    pub(crate) fn new(
        manager: SessionManager,
        credential: Credential,
        user_agent: Option<HeaderValue>,
        no_touch: bool,
        unsafe_method: bool,
        client_ip: Option<std::net::IpAddr>,
    ) -> Self {
        let mut sealed_values = Vec::new();
        let mut other_tokens = Vec::new();
        let (token, access_token, transport, had_cookie) = match credential {
            Credential::None { had_cookie } => (None, None, Transport::Cookie, had_cookie),
            Credential::Sealed(v) => {
                sealed_values = v;
                (None, None, Transport::Cookie, true)
            }
            Credential::Cookie(t, others) => {
                other_tokens = others;
                (Some(t), None, Transport::Cookie, true)
            }
            Credential::Bearer(t) => (Some(t), None, Transport::Bearer, false),
            Credential::AccessToken(t) => (None, Some(t), Transport::AccessToken, false),
        };
        let state = State {
            loaded: token.is_none() && sealed_values.is_empty(),
            token,
            record: None,
            pending: BTreeMap::new(),
            cookie: CookieAction::Keep,
            no_touch,
            invalid_bearer: false,
            principal: None,
            sealed_values,
            other_tokens,
            generation: None,
        };
        Self {
            inner: Arc::new(Inner {
                manager,
                started: now(),
                user_agent,
                had_cookie,
                transport,
                access_token,
                unsafe_method,
                client_ip,
                revoked: std::sync::atomic::AtomicBool::new(false),
                state: Mutex::new(state),
            }),
        }
    }

    /// How this request's credential travels.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, Error> {
        let mut st = self.inner.state.lock().await;
        if !st.loaded {
            if let (false, Some(backend)) = (
                st.sealed_values.is_empty(),
                self.inner.manager.sealed.clone(),
            ) {
                let values = std::mem::take(&mut st.sealed_values);
                self.open_sealed(&mut st, &backend, &values).await?;
            } else if let Some(token) = st.token.take() {
                let mut candidates = vec![token];
                candidates.append(&mut st.other_tokens);
                let mut live = Vec::new();
                for token in candidates.iter() {
                    if let Some(r) = self.inner.manager.store.load(&token.hash()).await?
                        && !r.is_expired(self.inner.started)
                    {
                        live.push((token.clone(), r));
                    }
                }
                let chosen = self.pick_among(candidates.len(), live, |(_, r)| r.user_id);
                if let Some((token, record)) = chosen {
                    st.token = Some(token);
                    st.record = Some(record);
                }
                if st.record.is_none() {
                    // Unknown, expired or revoked: treated as no session, and never adopted as an id.
                    st.token = None;
                    // A bearer token is the only credential its request presents: no anonymous
                    // fallback, the request is refused.
                    st.invalid_bearer = self.inner.transport == Transport::Bearer;
                }
            }
            st.loaded = true;
        }
        if st.invalid_bearer {
            return Err(Error::invalid_token(
                "the bearer token matches no live session (unknown, expired or revoked)",
            ));
        }
        Ok(st)
    }

    /// Chooses among the live sessions that the request's session cookies (`presented` of them)
    /// opened, by [`pick_live`], and logs when several cookies of the name arrived (without any
    /// value): a stale `Domain`/`Path` variant, or cookie tossing from a sibling subdomain.
    fn pick_among<T>(
        &self,
        presented: usize,
        live: Vec<T>,
        user_of: impl Fn(&T) -> Option<i64>,
    ) -> Option<T> {
        let users: Vec<Option<i64>> = live.iter().map(&user_of).collect();
        let chosen = pick_live(&users);
        if presented > 1 {
            tracing::warn!(
                cookie = %self.inner.manager.config.cookie.name,
                presented,
                live = live.len(),
                used = chosen.is_some(),
                "several session cookies of one name on a request (a stale Domain or Path variant, or cookie tossing from a sibling subdomain): the live one is used; live sessions of different users are both refused"
            );
        }
        chosen.and_then(|i| live.into_iter().nth(i))
    }

    /// Opens the request's sealed sessions (cookie backend): authentic, not expired, and of the
    /// user's current generation (one read of the users table each). The live one is chosen as
    /// for the other stores ([`pick_live`]); with none, the request has no session and the cookie
    /// is cleared; an older generation also marks the request as revoked.
    async fn open_sealed(
        &self,
        st: &mut State,
        backend: &stores::CookieSessions,
        values: &[String],
    ) -> Result<(), Error> {
        let mut live = Vec::new();
        let mut revoked = false;
        for value in values {
            match self.open_one_sealed(backend, value).await? {
                Ok(opened) => live.push(opened),
                Err(stores::CookieError::Revoked) => revoked = true,
                Err(_) => {}
            }
        }
        let chosen = self.pick_among(values.len(), live, |(_, r, _)| r.user_id);
        match chosen {
            Some((token, record, generation)) => {
                st.generation = generation;
                st.record = Some(Arc::new(record));
                st.token = Some(token);
            }
            None => {
                if revoked {
                    self.inner
                        .revoked
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                st.cookie = CookieAction::Remove;
            }
        }
        Ok(())
    }

    /// Opens one sealed session cookie, or says why it is refused.
    #[allow(clippy::type_complexity)]
    async fn open_one_sealed(
        &self,
        backend: &stores::CookieSessions,
        value: &str,
    ) -> Result<Result<(SecretToken, Record, Option<(i64, u64)>), stores::CookieError>, Error> {
        let refused = |why: stores::CookieError| {
            tracing::debug!(reason = %why, "sealed session cookie refused");
            Ok(Err(why))
        };
        let t = self.inner.started;
        let s = match backend
            .ring
            .open_unchecked(value, &self.inner.manager.config.cookie.name)
        {
            Ok(s) => s,
            Err(e) => return refused(e),
        };
        if t >= s.expires_at || t >= s.absolute_expires_at {
            return refused(stores::CookieError::Expired);
        }
        let Ok(token) = SecretToken::parse(TokenKind::Session, &s.token) else {
            return refused(stores::CookieError::Malformed);
        };
        let mut generation = None;
        if let Some(uid) = s.user_id {
            if backend.generations.current(uid).await? != Some(s.generation) {
                return refused(stores::CookieError::Revoked);
            }
            generation = Some((uid, s.generation));
        }
        let record = s.into_record(token.hash(), self.user_agent_text());
        Ok(Ok((token, record, generation)))
    }

    /// Seals `record` under `token` into a cookie value (cookie backend). An authenticated
    /// session carries its user's generation: the one it was opened under, or the current one
    /// after a login.
    async fn seal(
        &self,
        backend: &stores::CookieSessions,
        known: Option<(i64, u64)>,
        record: &Record,
        token: &SecretToken,
    ) -> Result<String, Error> {
        let generation = match (record.user_id, known) {
            (None, _) => 0,
            (Some(uid), Some((k, g))) if k == uid => g,
            (Some(uid), _) => backend.generations.current(uid).await?.ok_or_else(|| {
                Error::new(
                    ErrorCode::SessionExpired,
                    "the account was disabled while this request ran",
                )
            })?,
        };
        let sealed = stores::SealedSession::from_record(record, token.expose(), generation);
        let name = &self.inner.manager.config.cookie.name;
        backend.ring.seal(&sealed, name).map_err(|e| match e {
            stores::CookieError::TooLarge { size, limit } => {
                tracing::warn!(
                    size,
                    limit,
                    "session too large for the cookie store: {size} bytes sealed, over the {limit}-byte limit; the write was refused"
                );
                Error::new(ErrorCode::SessionTooLarge, e.to_string()).with_hint(
                    "keep less in the session (ids, not documents), or use a server-side store (session.store = \"cached-sqlite\" or redis://…)",
                )
            }
            other => Error::internal(other),
        })
    }

    /// Merges `delta` into `record`: in the store, or (cookie backend) in the record that will be
    /// re-sealed into the cookie.
    async fn save_record(&self, record: &Record, delta: &Delta) -> Result<Arc<Record>, Error> {
        if self.inner.manager.sealed.is_some() {
            let mut merged = record.clone();
            merged.apply(delta);
            return Ok(Arc::new(merged));
        }
        Ok(self.inner.manager.store.save(&record.key, delta).await?)
    }

    /// The error for a handler that needs a user and found none: 401 `session_expired` when the
    /// request's sealed session was ended by a generation bump, else `not_authenticated`.
    pub(crate) fn no_user_error(&self) -> Error {
        if self
            .inner
            .revoked
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            Error::new(
                ErrorCode::SessionExpired,
                "this session was ended by a logout everywhere, a password change or the account being disabled",
            )
            .with_hint("log in again")
        } else {
            Error::not_authenticated()
        }
    }

    /// The current session's record, if any (the whole "session list" of the cookie backend).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn current_record(&self) -> Result<Option<Record>, Error> {
        Ok(self.loaded().await?.record.as_deref().cloned())
    }

    /// The state, for operations that write: an access-token request has no session to write to.
    async fn writable(&self) -> Result<tokio::sync::MutexGuard<'_, State>, Error> {
        if self.inner.transport == Transport::AccessToken {
            // A valid token with the right scope still has no session; anything else says why.
            self.access_token_user().await?;
            return Err(Error::new(
                ErrorCode::SessionUnavailable,
                "requests authenticated by an access token have no session to store data in",
            )
            .with_hint(
                "use a session (cookie, or a bearer token from POST /auth/login) for this call",
            ));
        }
        self.loaded().await
    }

    /// Reads a value written by this or an earlier request.
    ///
    /// # Errors
    /// `store_unavailable` when the store cannot be reached; `internal` when the stored value does
    /// not deserialize as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let st = self.loaded().await?;
        let value: Option<&Value> = match st.pending.get(key) {
            Some(v) => v.as_ref(),
            None => st.record.as_ref().and_then(|r| r.data.get(key)),
        };
        // Deserialize from a borrow: no copy of the stored value.
        value
            .map(T::deserialize)
            .transpose()
            .map_err(Error::internal)
    }

    /// Writes a value; saved when the response leaves (not on a 5xx). Creates the session, and
    /// sends its cookie, if there was none.
    ///
    /// # Errors
    /// `store_unavailable`, or `internal` when `value` cannot be serialized.
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(Error::internal)?;
        let mut st = self.writable().await?;
        st.pending.insert(key.to_owned(), Some(value));
        Ok(())
    }

    /// Removes a key.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn remove(&self, key: &str) -> Result<(), Error> {
        let mut st = self.writable().await?;
        if st.record.is_some() {
            st.pending.insert(key.to_owned(), None);
        } else {
            st.pending.remove(key);
        }
        Ok(())
    }

    /// Deletes the session now, server-side, and expires the cookie (Django's `flush`).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn flush(&self) -> Result<(), Error> {
        let mut st = self.writable().await?;
        if let Some(record) = st.record.take()
            && self.inner.manager.sealed.is_none()
        {
            // The cookie store cannot end one session (a copy of the cookie opens until it
            // expires or the generation changes: docs/SECURITY.md, Deviations); clearing the
            // cookie below is all a logout does there.
            end_sessions(&**self.inner.manager.store(), Revoke::One(&record.key)).await?;
        }
        st.token = None;
        st.pending.clear();
        st.cookie = if self.inner.had_cookie {
            CookieAction::Remove
        } else {
            CookieAction::Keep
        };
        Ok(())
    }

    /// Moves the data to a new token and kills the old one (Django's `cycle_key`): an attacker who
    /// planted or learned the old token holds nothing afterwards.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn cycle_id(&self) -> Result<(), Error> {
        let mut st = self.loaded().await?;
        let Some(old) = st.record.clone() else {
            return Ok(());
        };
        let mut data = old.data.clone();
        merge_pending(&mut data, std::mem::take(&mut st.pending));
        self.replace(&mut st, Some(&old), old.user_id, data).await
    }

    /// Starts an authenticated session for `user` on a new token (login). Data of an anonymous
    /// session carries over; a session of another user is flushed, not inherited.
    pub(crate) async fn login(&self, user: SessionUser) -> Result<(), Error> {
        let mut st = self.writable().await?;
        let old = st.record.clone();
        let mut data = Map::new();
        if let Some(old) = &old
            && (old.user_id.is_none() || old.user_id == Some(user.id))
        {
            data = old.data.clone();
        }
        merge_pending(&mut data, std::mem::take(&mut st.pending));
        let user_id = user.id;
        data.insert(
            AUTH_USER_KEY.to_owned(),
            serde_json::to_value(user).map_err(Error::internal)?,
        );
        self.replace(&mut st, old.as_deref(), Some(user_id), data)
            .await
    }

    /// Bearer session tokens need a store to look them up in: the cookie store has none.
    fn bearer_supported(&self) -> Result<(), Error> {
        if self.inner.manager.sealed.is_some() {
            return Err(Error::new(
                ErrorCode::BearerNotSupported,
                "the cookie session store cannot issue bearer session tokens",
            )
            .with_hint(
                "log in with the cookie, or use a personal access token (POST /auth/tokens) for scripts",
            ));
        }
        Ok(())
    }

    /// Starts a new, independent session for `user` whose token travels as `Authorization:
    /// Bearer` (login with `"transport": "bearer"`). The request's own session is left alone and
    /// no cookie is set. Returns the token (shown once) and its expiry.
    pub(crate) async fn login_bearer(
        &self,
        mut user: SessionUser,
    ) -> Result<(SecretToken, UnixTime), Error> {
        self.bearer_supported()?;
        user.transport = Transport::Bearer;
        let user_id = user.id;
        let mut data = Map::new();
        data.insert(
            AUTH_USER_KEY.to_owned(),
            serde_json::to_value(user).map_err(Error::internal)?,
        );
        let (record, token) = self.create(Some(user_id), data, None).await?;
        Ok((token, record.expires_at.min(record.absolute_expires_at)))
    }

    /// Moves this session to a new token as an anonymous session holding `key` = `value` (the
    /// pending second-factor state after a correct password): a logged-in user's data is dropped,
    /// an anonymous session's kept. The record exists when this returns, so the answer can carry
    /// its CSRF token.
    pub(crate) async fn restart_anonymous(&self, key: &str, value: Value) -> Result<(), Error> {
        let mut st = self.writable().await?;
        let old = st.record.clone();
        let mut data = Map::new();
        if let Some(old) = &old
            && old.user_id.is_none()
        {
            data = old.data.clone();
        }
        merge_pending(&mut data, std::mem::take(&mut st.pending));
        data.remove(AUTH_USER_KEY);
        data.insert(key.to_owned(), value);
        self.replace(&mut st, old.as_deref(), None, data).await
    }

    /// Creates a new, independent anonymous session holding `data` whose token travels as
    /// `Authorization: Bearer` (the pending second-factor state of a bearer login), dead at
    /// `until` at the latest: the record's absolute expiry, which the store enforces and no
    /// request slides past, so the token dies with what it was made for instead of lingering
    /// for the idle timeout. Returns the token and its expiry.
    pub(crate) async fn create_bearer(
        &self,
        data: Map<String, Value>,
        until: UnixTime,
    ) -> Result<(SecretToken, UnixTime), Error> {
        self.bearer_supported()?;
        let (record, token) = self.create(None, data, Some(until)).await?;
        Ok((token, record.expires_at.min(record.absolute_expires_at)))
    }

    /// The current token and its expiry, for a bearer session that has just rotated.
    pub(crate) async fn current_token(&self) -> Option<(SecretToken, UnixTime)> {
        let st = self.inner.state.lock().await;
        match (&st.token, &st.record) {
            (Some(t), Some(r)) => Some((t.clone(), r.expires_at.min(r.absolute_expires_at))),
            _ => None,
        }
    }

    /// Creates a new record with a fresh token, deletes `old`, and arranges the cookie.
    async fn replace(
        &self,
        st: &mut State,
        old: Option<&Record>,
        user_id: Option<i64>,
        data: Map<String, Value>,
    ) -> Result<(), Error> {
        let (record, token) = self.create(user_id, data, None).await?;
        st.token = Some(token);
        // A new identity: a sealed session takes the user's current generation at commit.
        st.generation = None;
        if let Some(old) = old {
            self.inner.manager.store.delete(&old.key).await?;
        }
        st.record = Some(Arc::new(record));
        st.cookie = CookieAction::Set;
        Ok(())
    }

    /// Creates a record under a new token (retrying once on the astronomically unlikely collision).
    /// Its absolute expiry is `session.absolute_timeout` from now, or `until` when that is earlier.
    async fn create(
        &self,
        user_id: Option<i64>,
        data: Map<String, Value>,
        until: Option<UnixTime>,
    ) -> Result<(Record, SecretToken), Error> {
        let cfg = &self.inner.manager.config;
        let t = self.inner.started;
        let mut absolute = t + secs(cfg.absolute_timeout);
        if let Some(until) = until {
            absolute = absolute.min(until);
        }
        let mut attempt = 0;
        loop {
            let token = SecretToken::generate(TokenKind::Session);
            let record = Record {
                key: token.hash(),
                user_id,
                data: data.clone(),
                created_at: t,
                last_seen: t,
                expires_at: (t + secs(cfg.idle_for(user_id))).min(absolute),
                absolute_expires_at: absolute,
                user_agent: self.user_agent_text(),
            };
            match self.inner.manager.store.create(&record).await {
                Ok(()) => return Ok((record, token)),
                Err(StoreError::Collision) if attempt == 0 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The request's `User-Agent` as kept with a session (cut to [`MAX_USER_AGENT`]).
    fn user_agent_text(&self) -> Option<String> {
        self.inner.user_agent.as_ref().map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(MAX_USER_AGENT)
                .collect()
        })
    }

    /// The logged-in user, if any.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn user(&self) -> Result<Option<SessionUser>, Error> {
        if self.inner.transport == Transport::AccessToken {
            return self.access_token_user().await.map(Some);
        }
        self.get(AUTH_USER_KEY).await
    }

    /// Resolves the access token of this request (once), checking expiry, revocation, the
    /// owner's active flag and, for writes, the `write` scope.
    async fn access_token_user(&self) -> Result<SessionUser, Error> {
        let mut st = self.inner.state.lock().await;
        if let Some(p) = &st.principal {
            return Ok(p.clone());
        }
        let (Some(token), Some(tokens)) =
            (&self.inner.access_token, &self.inner.manager.access_tokens)
        else {
            return Err(Error::invalid_token("access tokens are not accepted here"));
        };
        let Some((record, owner)) = tokens.resolve(&token.hash()).await? else {
            return Err(Error::invalid_token(
                "the access token is unknown, expired or revoked",
            ));
        };
        if self.inner.unsafe_method && !record.can_write() {
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                "this access token has the read scope only; writes need the write scope",
            )
            .with_hint("create a token with \"scopes\": [\"read\", \"write\"]"));
        }
        let user = SessionUser {
            id: owner.id,
            username: owner.username,
            auth_time: record.created_at,
            transport: Transport::AccessToken,
        };
        st.principal = Some(user.clone());
        Ok(user)
    }

    /// Whether a live session exists (loaded, or created by this request).
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn exists(&self) -> Result<bool, Error> {
        Ok(self.loaded().await?.record.is_some())
    }

    /// The public id of the session (the hash of its token), if it exists.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn id(&self) -> Result<Option<TokenHash>, Error> {
        Ok(self.loaded().await?.record.as_ref().map(|r| r.key))
    }

    /// A secret derived from this cookie session's token for `domain` (SHA-256 of the domain and
    /// the token), or `None` when there is no cookie session. The CSRF token is built on it
    /// (`csrf::session_token`): it changes with every rotation of the session id, and the token
    /// itself never leaves the session.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn derived_secret(&self, domain: &[u8]) -> Result<Option<[u8; 32]>, Error> {
        if self.inner.transport != Transport::Cookie {
            return Ok(None);
        }
        let st = self.loaded().await?;
        Ok(match (&st.record, &st.token) {
            (Some(_), Some(token)) => Some(token.derive(domain)),
            _ => None,
        })
    }

    /// Asks that this request not extend the session's expiry (for pollers: a dashboard left open
    /// should not keep a session alive forever).
    pub async fn skip_touch(&self) {
        self.inner.state.lock().await.no_touch = true;
    }

    /// The manager (store and settings) this session belongs to.
    pub fn manager(&self) -> &SessionManager {
        &self.inner.manager
    }

    /// Whether [`Session::commit`] could have anything to do: a write, a cookie change or an
    /// expiry extension. Cheap and synchronous, so the common read-only request skips the commit.
    pub(crate) fn needs_commit(&self, save: bool) -> bool {
        let Ok(st) = self.inner.state.try_lock() else {
            return true;
        };
        if st.cookie != CookieAction::Keep || (save && !st.pending.is_empty()) {
            return true;
        }
        let touch = secs(self.inner.manager.config.touch_interval);
        save && !st.no_touch
            && st
                .record
                .as_ref()
                .is_some_and(|r| self.inner.started - r.last_seen >= touch)
    }

    /// Saves what the request changed and decides the cookie. Called by [`SessionLayer`] once the
    /// handler has answered. `save` is false for 5xx responses: nothing pending is written then.
    pub(crate) async fn commit(
        &self,
        save: bool,
    ) -> Result<Option<cookie::Cookie<'static>>, Error> {
        let mut st = self.inner.state.lock().await;
        let cfg = self.inner.manager.config.clone();
        let t = self.inner.started;
        if save && !st.pending.is_empty() {
            let pending = std::mem::take(&mut st.pending);
            match st.record.clone() {
                // Only a cookie session is created on first write: a bearer request has a live
                // session (or was refused), an access-token request has none to write.
                None if self.inner.transport != Transport::Cookie => {}
                None => {
                    let mut data = Map::new();
                    merge_pending(&mut data, pending);
                    if !data.is_empty() {
                        if let Some(limit) = &self.inner.manager.anonymous_limit {
                            let ip = self
                                .inner
                                .client_ip
                                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                            const KEY: &str = "rate_limits.anonymous_sessions_per_ip";
                            limit.budget.take(ip, KEY).inspect_err(|_| {
                                audit!("rate_limit", limit = KEY);
                            })?;
                        }
                        let (record, token) = self.create(None, data, None).await?;
                        st.token = Some(token);
                        st.record = Some(Arc::new(record));
                        st.cookie = CookieAction::Set;
                    }
                }
                Some(record) => {
                    let mut delta = Delta {
                        last_seen: t,
                        expires_at: (t + secs(cfg.idle_for(record.user_id)))
                            .min(record.absolute_expires_at),
                        ..Delta::default()
                    };
                    if st.no_touch {
                        delta.last_seen = record.last_seen;
                        delta.expires_at = record.expires_at;
                    }
                    for (k, v) in pending {
                        match v {
                            Some(v) => {
                                delta.set.insert(k, v);
                            }
                            None => delta.remove.push(k),
                        }
                    }
                    // A sealed session changed: its cookie must be re-sealed.
                    let refreshed = delta.expires_at != record.expires_at
                        || self.inner.manager.sealed.is_some();
                    let merged = self.save_record(&record, &delta).await?;
                    st.record = Some(merged);
                    if refreshed && st.cookie == CookieAction::Keep {
                        st.cookie = CookieAction::Set;
                    }
                }
            }
        } else if save
            && !st.no_touch
            && st.cookie == CookieAction::Keep
            && let Some(record) = st.record.clone()
            && t - record.last_seen >= secs(cfg.touch_interval)
        {
            let delta = Delta {
                last_seen: t,
                expires_at: (t + secs(cfg.idle_for(record.user_id)))
                    .min(record.absolute_expires_at),
                ..Delta::default()
            };
            let merged = self.save_record(&record, &delta).await?;
            st.record = Some(merged);
            st.cookie = CookieAction::Set;
        }
        if self.inner.transport != Transport::Cookie {
            return Ok(None);
        }
        Ok(match st.cookie {
            CookieAction::Keep => None,
            CookieAction::Remove => Some(cfg.cookie.removal()),
            CookieAction::Set => match (&st.record, &st.token, &self.inner.manager.sealed) {
                (Some(r), Some(token), None) => Some(
                    cfg.cookie
                        .build(token.expose().to_owned(), r.expires_at - t),
                ),
                (Some(r), Some(token), Some(backend)) => {
                    let value = self.seal(backend, st.generation, r, token).await?;
                    Some(cfg.cookie.build(value, r.expires_at - t))
                }
                _ => Some(cfg.cookie.removal()),
            },
        })
    }

    /// Whether the request arrived with a session cookie (valid or not).
    pub(crate) fn had_cookie(&self) -> bool {
        self.inner.had_cookie
    }
}

/// Which of the live sessions opened by a request's session cookies (given by their user ids,
/// in the order the cookies were sent) the request uses. Browsers send every cookie of a name
/// that matches (host-only and `Domain` ones, every matching `Path`), so a sibling subdomain can
/// plant a second one ("cookie tossing"); taking the first well-formed one would let a planted
/// cookie answer as the attacker, and a dead one log the owner out. So: a dead cookie never wins
/// (only live sessions are given here); an authenticated session wins over anonymous ones; and
/// when live sessions of *different* users arrive together, neither is used (the request is
/// anonymous): the server cannot tell whose browser it is, and answering as either could put the
/// owner's actions in the attacker's account.
pub(crate) fn pick_live(users: &[Option<i64>]) -> Option<usize> {
    let mut authenticated = users.iter().enumerate().filter(|(_, u)| u.is_some());
    match authenticated.next() {
        Some((i, first)) => authenticated.all(|(_, u)| u == first).then_some(i),
        None => (!users.is_empty()).then_some(0),
    }
}

fn merge_pending(data: &mut Map<String, Value>, pending: BTreeMap<String, Option<Value>>) {
    for (k, v) in pending {
        match v {
            Some(v) => {
                data.insert(k, v);
            }
            None => {
                data.remove(&k);
            }
        }
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

/// Rejection when a handler asks for a [`Session`] that no [`SessionLayer`] provided: a wiring bug.
fn missing_layer() -> Error {
    Error::new(ErrorCode::Internal, "no session on this request")
        .with_hint("is vestibule::session::SessionLayer installed around this route?")
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(missing_layer)
    }
}

#[cfg(test)]
mod tests {
    use super::pick_live;

    #[test]
    fn the_live_authenticated_session_wins_and_two_users_are_refused() {
        assert_eq!(pick_live(&[]), None);
        assert_eq!(pick_live(&[None]), Some(0));
        assert_eq!(pick_live(&[None, None]), Some(0));
        // A planted anonymous session never shadows the owner's login.
        assert_eq!(pick_live(&[None, Some(7)]), Some(1));
        assert_eq!(pick_live(&[Some(7), None, Some(7)]), Some(0));
        // Two accounts at once: neither.
        assert_eq!(pick_live(&[Some(6), Some(7)]), None);
        assert_eq!(pick_live(&[None, Some(7), Some(6)]), None);
    }
}
