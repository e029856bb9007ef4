//! [`Session`], the per-request handle: what a request's credential opened (lazily, on first
//! use), the data reads and writes a handler makes, and the user it is logged in as. Rotation at
//! login is in `rotate.rs`, saving when the response leaves in `commit.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use super::{
    AUTH_USER_KEY, Credential, MAX_USER_AGENT, Record, SessionManager, SessionUser, Transport,
    UnixTime, now, pick_live, stores,
};
use crate::error::{Error, ErrorCode};
use crate::token::{SecretToken, TokenHash};

/// What the cookie must become when the response leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CookieAction {
    Keep,
    Set,
    Remove,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) loaded: bool,
    /// The token of the current record (the cookie's, or a new one after rotation).
    pub(super) token: Option<SecretToken>,
    pub(super) record: Option<Arc<Record>>,
    /// Changes not yet saved: `Some` = set, `None` = removed.
    pub(super) pending: BTreeMap<String, Option<Value>>,
    pub(super) cookie: CookieAction,
    pub(super) no_touch: bool,
    /// A bearer session token that matched no live session: every access answers 401.
    pub(super) invalid_bearer: bool,
    /// The resolved owner of an access token (resolved once per request).
    pub(super) principal: Option<SessionUser>,
    /// The sealed cookies of the request, until they are opened (cookie backend).
    pub(super) sealed_values: Vec<String>,
    /// Further session cookies of the same name as `token`, until the session loads.
    pub(super) other_tokens: Vec<SecretToken>,
    /// The user and generation the opened sealed session was issued under (cookie backend).
    pub(super) generation: Option<(i64, u64)>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) manager: SessionManager,
    /// The request's start: one clock read serves every expiry decision of the request.
    pub(super) started: UnixTime,
    pub(super) user_agent: Option<HeaderValue>,
    pub(super) had_cookie: bool,
    pub(super) transport: Transport,
    /// The access token of an [`Transport::AccessToken`] request.
    pub(super) access_token: Option<SecretToken>,
    /// Whether the method writes (POST, PUT, PATCH, DELETE…), for access-token scopes.
    pub(super) unsafe_method: bool,
    /// The client's address group, when the anonymous-session limit needs it.
    pub(super) client_ip: Option<std::net::IpAddr>,
    /// The request's sealed session was refused for an older generation (cookie backend): a
    /// handler that needs a user answers 401 `session_expired`, not `not_authenticated`.
    pub(super) revoked: std::sync::atomic::AtomicBool,
    pub(super) state: Mutex<State>,
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
    pub(super) inner: Arc<Inner>,
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

    pub(super) async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, Error> {
        let mut st = self.inner.state.lock().await;
        if !st.loaded {
            if let (false, Some(backend)) = (
                st.sealed_values.is_empty(),
                self.inner.manager.sealed.clone(),
            ) {
                let values = std::mem::take(&mut st.sealed_values);
                self.open_sealed(&mut st, &backend, &values).await?;
            } else if let Some(token) = st.token.take() {
                if st.other_tokens.is_empty() {
                    // One credential, the usual case: what `pick_among` would choose from one
                    // candidate, without building the lists.
                    if let Some(record) = self.load_live(&token).await? {
                        st.token = Some(token);
                        st.record = Some(record);
                    }
                } else {
                    let mut candidates = vec![token];
                    candidates.append(&mut st.other_tokens);
                    let mut live = Vec::new();
                    for token in candidates.iter() {
                        if let Some(r) = self.load_live(token).await? {
                            live.push((token.clone(), r));
                        }
                    }
                    let chosen = self.pick_among(candidates.len(), live, |(_, r)| r.user_id);
                    if let Some((token, record)) = chosen {
                        st.token = Some(token);
                        st.record = Some(record);
                    }
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

    /// The live record `token` opens: the store's cached copy when it has one, else a load.
    async fn load_live(&self, token: &SecretToken) -> Result<Option<Arc<Record>>, Error> {
        let store = &self.inner.manager.store;
        let key = token.hash();
        let record = match store.cached(&key) {
            Some(r) => Some(r),
            None => store.load(&key).await?,
        };
        Ok(record.filter(|r| !r.is_expired(self.inner.started)))
    }

    /// Chooses among the live sessions that the request's session cookies (`presented` of them)
    /// opened, by [`pick_live`], and logs when several cookies of the name arrived (without any
    /// value): a stale `Domain`/`Path` variant, or cookie tossing from a sibling subdomain.
    pub(super) fn pick_among<T>(
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

    /// Opens the request's sealed sessions (cookie backend: [`stores::CookieSessions::open`]).
    /// The live one is chosen as for the other stores ([`pick_live`]); with none, the request has
    /// no session and the cookie is cleared; an older generation also marks the request as
    /// revoked.
    async fn open_sealed(
        &self,
        st: &mut State,
        backend: &stores::CookieSessions,
        values: &[String],
    ) -> Result<(), Error> {
        let name = &self.inner.manager.config.cookie.name;
        let mut live = Vec::new();
        let mut revoked = false;
        for value in values {
            match backend.open(value, name, self.inner.started).await? {
                Ok(opened) => live.push(opened),
                Err(stores::CookieError::Revoked) => revoked = true,
                Err(_) => {}
            }
        }
        match self.pick_among(values.len(), live, |o| o.record.user_id) {
            Some(mut opened) => {
                opened.record.user_agent = self.user_agent_text();
                st.generation = opened.generation;
                st.record = Some(Arc::new(opened.record));
                st.token = Some(opened.token);
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
    pub(super) async fn writable(&self) -> Result<tokio::sync::MutexGuard<'_, State>, Error> {
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
            None if key == AUTH_USER_KEY => {
                // Held typed, not among the data (see `SessionUser`): the rare generic read of
                // it goes through JSON; `user()` reads it directly.
                let user = st.record.as_ref().and_then(|r| r.user.as_ref());
                return user
                    .map(|u| T::deserialize(u.to_value()))
                    .transpose()
                    .map_err(Error::internal);
            }
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
        if let Some(record) = st.record.take() {
            if self.inner.manager.sealed.is_none() {
                self.inner.manager.end_record(&record).await?;
            } else {
                // The cookie store cannot end one session (a copy of the cookie opens until it
                // expires or the generation changes: docs/SECURITY.md, Deviations); clearing
                // the cookie below is all a logout does there, besides the end hook.
                self.inner.manager.ended_in_cookie(&record);
            }
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

    /// The request's `User-Agent` as kept with a session (cut to [`MAX_USER_AGENT`]).
    pub(super) fn user_agent_text(&self) -> Option<std::sync::Arc<str>> {
        self.inner.user_agent.as_ref().map(|v| {
            let text: String = String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(MAX_USER_AGENT)
                .collect();
            super::record::shared_user_agent(&text)
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
        let st = self.loaded().await?;
        match st.pending.get(AUTH_USER_KEY) {
            // Written by this request (a login, a password change's new auth_time).
            Some(v) => v
                .as_ref()
                .map(<SessionUser as serde::Deserialize>::deserialize)
                .transpose()
                .map_err(Error::internal),
            None => Ok(st.record.as_ref().and_then(|r| r.user.clone())),
        }
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
        let Some(grant) = tokens.grant(&token.hash()).await? else {
            return Err(Error::invalid_token(
                "the access token is unknown, expired or revoked",
            ));
        };
        if self.inner.unsafe_method && !grant.can_write {
            return Err(Error::new(
                ErrorCode::InsufficientScope,
                "this access token has the read scope only; writes need the write scope",
            )
            .with_hint("create a token with \"scopes\": [\"read\", \"write\"]"));
        }
        let user = SessionUser {
            id: grant.user_id,
            username: grant.username,
            auth_time: grant.created_at,
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

    /// Whether the request arrived with a session cookie (valid or not).
    pub(crate) fn had_cookie(&self) -> bool {
        self.inner.had_cookie
    }
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
