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
//!
//! Files: this one (the manager, the credential, ending sessions), `handle.rs` ([`Session`]:
//! lazy load, reads and writes), `rotate.rs` (new tokens: rotation, login, bearer sessions),
//! `commit.rs` (saving and the `Set-Cookie` when the response leaves), `layer.rs`
//! ([`SessionLayer`]), `access.rs` (access tokens as a session sees them).

mod access;
mod commit;
mod config;
mod handle;
mod layer;
mod record;
mod rotate;
mod section;
mod store;
pub mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use self::access::{AccessGrant, AccessTokenLookup, is_read_method};
pub use self::config::{
    CookieConfig, DEFAULT_ANONYMOUS_TIMEOUT, DEFAULT_COOKIE_NAME, SessionConfig,
};
pub use self::handle::Session;
pub(crate) use self::layer::credential_from_headers;
pub use self::layer::{NO_TOUCH_HEADER, SessionLayer, SessionService};
pub use self::record::{
    AUTH_USER_KEY, Delta, Record, SHARED_USER_AGENTS, SessionUser, Transport, UnixTime, now,
    shared_user_agent,
};
pub use self::section::{Lifetimes, RawSession, SessionSection};
pub use self::store::SharedLock;
pub use self::store::{Ended, Revoke, SessionStore, StoreError, revoke_by_deleting};
use crate::error::Error;
use crate::token::SecretToken;

/// Longest `User-Agent` kept with a session; the rest is cut (it is only shown in session lists).
const MAX_USER_AGENT: usize = 256;

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
    pub(crate) access_tokens: Option<Arc<dyn AccessTokenLookup>>,
    pub(crate) anonymous_limit: Option<AnonymousLimit>,
    /// The stateless cookie backend, when `session.store = "cookie"`.
    pub(crate) sealed: Option<Arc<stores::CookieSessions>>,
    /// What a higher layer does with every session that ends ([`EndHook`]).
    pub(crate) end_hook: Option<Arc<dyn EndHook>>,
}

/// What a higher layer must also do when sessions end, given the records as they were last
/// stored: the OpenID Connect relying party revokes the provider tokens a session kept for the
/// relay (RFC 7009), whichever way the session ended (logout, the session list, logout
/// everywhere, a password change or reset, the session cap, the provider's back-channel
/// logout). A trait here so that sessions stay below auth in the layering, as
/// [`AddressBudget`] does for the rate limits; [`SessionManager::end`] and
/// [`Session::flush`] are where it is called, so no way of ending a session can skip it.
pub trait EndHook: std::fmt::Debug + Send + Sync {
    /// The sessions of `records` have just ended. Called on the request's task: whatever waits
    /// on the network is spawned, so that a slow provider never holds a logout.
    fn ended(&self, records: &[Record]);
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
            end_hook: None,
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

    /// Also accept personal access tokens (`Authorization: Bearer vpat_…`) looked up in
    /// `tokens` (`auth::AccessTokens`).
    pub fn with_access_tokens(mut self, tokens: impl AccessTokenLookup) -> Self {
        Arc::make_mut(&mut self.0).access_tokens = Some(Arc::new(tokens));
        self
    }

    /// Calls `hook` with every session that ends through this manager ([`EndHook`]).
    pub fn with_end_hook(mut self, hook: Arc<dyn EndHook>) -> Self {
        Arc::make_mut(&mut self.0).end_hook = Some(hook);
        self
    }

    /// The store, for administrative operations (listing, revoking a user's sessions).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Ends sessions, then gives what ended to the [`EndHook`]: the one way to end them —
    /// logout ([`Session::flush`], through [`Self::end_record`]), ending one of one's sessions,
    /// logout everywhere, password change and reset, the session cap, a back-channel logout,
    /// disabling or deleting a user, and the administrator's `vestibule session revoke`.
    ///
    /// With a hook, the records are read (past any read cache) before they go: one more store
    /// read, only when a hook is set. The cookie store keeps no records: the other sessions it
    /// ends (by the user's generation) are not seen, only the current one at its logout.
    ///
    /// # Errors
    /// `store_unavailable`, or `session_not_found` when the store cannot end one session by id
    /// (the cookie store).
    pub async fn end(&self, what: Revoke<'_>) -> Result<Ended, Error> {
        let Some(hook) = self.end_hook.as_ref().filter(|_| !self.is_stateless()) else {
            return end_sessions(&*self.store, what).await;
        };
        match what {
            Revoke::One(key) => match self.store.load_latest(key).await? {
                Some(record) => self.end_record(&record).await,
                None => end_sessions(&*self.store, what).await,
            },
            Revoke::User { user_id, keep } => {
                let records: Vec<Record> = self
                    .store
                    .list_user(user_id)
                    .await?
                    .into_iter()
                    .filter(|r| Some(&r.key) != keep)
                    .collect();
                let ended = end_sessions(&*self.store, what).await?;
                hook.ended(&records);
                Ok(ended)
            }
        }
    }

    /// Ends the session of `record`, already read by the caller, and gives it to the
    /// [`EndHook`] when this call is what ended it (a session another path ended first is not
    /// handed over twice).
    ///
    /// # Errors
    /// As [`Self::end`].
    pub async fn end_record(&self, record: &Record) -> Result<Ended, Error> {
        let ended = end_sessions(&*self.store, Revoke::One(&record.key)).await?;
        if ended != Ended::Deleted(0)
            && let Some(hook) = &self.end_hook
        {
            hook.ended(std::slice::from_ref(record));
        }
        Ok(ended)
    }

    /// Ends every session of every user in `user_ids` (the administrator's "everyone": the
    /// stores have no user table, so the caller lists the users), each user through
    /// [`Self::end`]; anonymous sessions hold no account and are left to expire.
    ///
    /// # Errors
    /// As [`Self::end`]; users before the failing one are already done.
    pub async fn end_all(&self, user_ids: impl IntoIterator<Item = i64>) -> Result<Ended, Error> {
        let mut total = Ended::Deleted(0);
        for user_id in user_ids {
            total = total.and(
                self.end(Revoke::User {
                    user_id,
                    keep: None,
                })
                .await?,
            );
        }
        Ok(total)
    }

    /// Gives the record of a cookie-store session that just logged out to the [`EndHook`]: the
    /// store holds nothing to delete, the record was opened from the cookie.
    pub(crate) fn ended_in_cookie(&self, record: &Record) {
        if let Some(hook) = &self.end_hook {
            hook.ended(std::slice::from_ref(record));
        }
    }

    /// The settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
}

/// The one store call every way of ending sessions reaches, private to this module so that
/// nothing can end a session without [`SessionManager::end`] and its [`EndHook`] (the compiler
/// keeps that true). Each store implements [`SessionStore::revoke`]: the server-side stores
/// delete records, the cookie store bumps the user's generation and refuses to end one session
/// by id (an error, never "ended 0").
///
/// # Errors
/// `store_unavailable`, or `session_not_found` when the store cannot end one session by id.
async fn end_sessions(store: &dyn SessionStore, what: Revoke<'_>) -> Result<Ended, Error> {
    Ok(store.revoke(what).await?)
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
