//! The token relay: the provider's tokens kept in the session (sealed), and the access token
//! handed to upstreams, refreshed first when due — one refresh per session at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::OAuth2TokenResponse;
use serde::{Deserialize, Serialize};

use super::client_auth::TokenFailure;
use super::{RelyingParty, TOKENS_KEY, err};
use crate::error::{Error, ErrorCode, Result};
use crate::session::{Delta, Session, SharedLock, now};
use crate::token::TokenHash;

/// How long the shared refresh lock lives at most (past the provider client's 10 s timeout).
const SHARED_LOCK_TTL: Duration = Duration::from_secs(15);
/// How long a request waits for another instance's refresh.
const SHARED_WAIT: Duration = Duration::from_secs(16);
/// How often a waiting request looks again.
const SHARED_POLL: Duration = Duration::from_millis(50);

/// How long after a failed refresh (the provider down, or refusing Vestibule's client) a
/// session's requests go on with its still valid access token without asking again. Without
/// it, every request in the last half of a token's life waited for the provider's answer, up
/// to the HTTP client's 10 s timeout when it is down. The same 5 s as the `Retry-After` of the
/// 503 once the token has expired.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// A session's refresh slot (`RelyingParty`'s `flights`): one refresh at a time, and what the
/// last one got.
/// Its `Debug` is [`ProviderTokens`]', which leaves the tokens out.
#[derive(Debug, Default)]
pub(super) struct Flight {
    /// The tokens the last successful refresh got: requests that waited take them.
    latest: Option<ProviderTokens>,
    /// When the last refresh failed without ending the login.
    failed_at: Option<Instant>,
}

/// Whose refresh it is.
enum Turn {
    /// This request's: the lock (or [`SharedLock::Local`] on a store of one process), and the
    /// tokens to refresh — the shared store's, which may be newer than the ones this request
    /// loaded (another instance refreshed, its new tokens already due again).
    Mine(SharedLock, Box<ProviderTokens>),
    /// Another instance refreshed: its tokens.
    Refreshed(ProviderTokens),
}

/// The provider's tokens as the session keeps them (see [`TOKENS_KEY`]); never sent to the
/// browser. Its `Debug` leaves the tokens out, so a `{:?}` in a log line cannot leak them.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProviderTokens {
    /// The provider's name.
    pub provider: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<String>,
    /// When the access token expires (Unix seconds), when the provider said.
    pub expires_at: Option<i64>,
    /// The subject (back-channel logout by `sub`).
    pub subject: String,
    /// The access token's lifetime in seconds as the provider gave it (the refresh margin is
    /// a share of it).
    #[serde(default)]
    pub lifetime: Option<i64>,
}

impl ProviderTokens {
    /// Whether the access token is due for a refresh: within 30 seconds (or half its lifetime,
    /// if shorter) of its expiry.
    fn due(&self, at: i64) -> bool {
        let margin = self.lifetime.map_or(30, |l| (l / 2).min(30));
        self.expires_at.is_some_and(|e| e - at <= margin)
    }
}

/// Whether `tokens`' access token has not expired at `at`: a refresh that fails for a reason
/// other than the login itself (the provider down, or refusing Vestibule's client
/// authentication) then lets the request go on with it.
fn still_valid(tokens: &ProviderTokens, at: i64) -> bool {
    tokens.expires_at.is_some_and(|x| x > at)
}

impl RelyingParty {
    /// Keeps the provider's `tokens` in the session of `user_id`, sealed under `secret_key`
    /// (when one is set).
    ///
    /// # Errors
    /// 503 `store_unavailable`.
    pub async fn keep_tokens(
        &self,
        session: &Session,
        user_id: i64,
        tokens: &ProviderTokens,
    ) -> Result<()> {
        let json = serde_json::to_vec(tokens).map_err(Error::internal)?;
        let sealed = self.0.secrets.seal(user_id, &json)?;
        session.insert(TOKENS_KEY, sealed).await
    }

    async fn tokens(&self, session: &Session, user_id: i64) -> Result<Option<ProviderTokens>> {
        let Some(sealed) = session.get::<String>(TOKENS_KEY).await? else {
            return Ok(None);
        };
        let json = self.0.secrets.open(user_id, &sealed)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(Error::internal)
    }

    /// The provider's access token of this session (logged in as `user_id`), refreshed first
    /// when it is about to expire — one refresh per session at a time; `None` when the session
    /// did not log in through a provider. When the provider refuses the refresh token for good,
    /// the session ends.
    ///
    /// # Errors
    /// 401 `session_expired` (the refresh was refused: logged out), 502 `oidc_client_rejected`
    /// (the provider refused Vestibule's client authentication and the token has expired: the
    /// session is kept), 503 `oidc_provider_unavailable` (the provider did not answer and the
    /// token has expired), 503 `store_unavailable`.
    pub async fn access_token(&self, session: &Session, user_id: i64) -> Result<Option<String>> {
        let Some(tokens) = self.tokens(session, user_id).await? else {
            return Ok(None);
        };
        let at = now();
        if !tokens.due(at) {
            return Ok(Some(tokens.access_token));
        }
        let Some(key) = session.id().await? else {
            return Ok(Some(tokens.access_token));
        };
        let flight = self
            .0
            .flights
            .get_with(key, async {
                Arc::new(tokio::sync::Mutex::new(Flight::default()))
            })
            .await;
        let mut flight = flight.lock().await;
        if let Some(done) = flight.latest.as_ref()
            && !done.due(at)
            && done.expires_at >= tokens.expires_at
        {
            // Another request of this session refreshed while this one waited.
            let done = done.clone();
            self.keep_tokens(session, user_id, &done).await?;
            return Ok(Some(done.access_token));
        }
        if still_valid(&tokens, at)
            && flight
                .failed_at
                .is_some_and(|t| t.elapsed() < AFTER_FAILURE)
        {
            // A refresh failed moments ago: go on with the valid token, ask again later.
            return Ok(Some(tokens.access_token));
        }
        // Across instances on a shared store (Redis): the provider rotates refresh tokens, so a
        // second refresh with the old one would fail and end the session. One instance refreshes;
        // the others wait and take its tokens from the store.
        let store = session.manager().store().clone();
        let name = format!("oidc-refresh:{}", key.to_hex());
        let (lock, tokens) = match self
            .shared_turn(&*store, &name, &key, user_id, tokens)
            .await?
        {
            Turn::Mine(lock, tokens) => (lock, *tokens),
            Turn::Refreshed(fresh) => {
                self.keep_tokens(session, user_id, &fresh).await?;
                flight.latest = Some(fresh.clone());
                flight.failed_at = None;
                return Ok(Some(fresh.access_token));
            }
        };
        let out = self.refresh(session, user_id, &tokens, at).await;
        // `Ok(None)`: no refresh token, or the refresh failed and the token is still valid.
        flight.failed_at = matches!(out, Ok(None)).then(Instant::now);
        if let Ok(Some(fresh)) = &out {
            flight.latest = Some(fresh.clone());
            if matches!(lock, SharedLock::Held(_))
                && let Err(e) = self.publish(&*store, &key, user_id, fresh).await
            {
                tracing::warn!(error = %e, "refreshed provider tokens not published to the shared store");
            }
        }
        if let Err(e) = store.unlock(&name, &lock).await {
            // It expires by itself (SHARED_LOCK_TTL).
            tracing::warn!(error = %e, "refresh lock not released");
        }
        out.map(|fresh| Some(fresh.map_or(tokens.access_token, |f| f.access_token)))
    }

    /// Refreshes `tokens` at the provider: `Some` the new tokens (kept in the session), `None`
    /// to go on with the current access token (no refresh token, or the provider did not answer
    /// and the token is still valid).
    async fn refresh(
        &self,
        session: &Session,
        user_id: i64,
        tokens: &ProviderTokens,
        at: i64,
    ) -> Result<Option<ProviderTokens>> {
        let Some(refresh) = tokens.refresh_token.clone() else {
            return Ok(None);
        };
        let p = self.provider(&tokens.provider)?;
        let m = self.metadata(p, false).await?;
        let answer = self
            .token_request(p, &m, super::client_auth::Grant::Refresh(refresh.clone()))
            .await;
        match answer {
            Ok(r) => {
                let lifetime = r
                    .expires_in()
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                let fresh = ProviderTokens {
                    provider: tokens.provider.clone(),
                    access_token: r.access_token().secret().clone(),
                    refresh_token: Some(r.refresh_token().map_or(refresh, |t| t.secret().clone())),
                    expires_at: lifetime.map(|l| now().saturating_add(l)),
                    subject: tokens.subject.clone(),
                    lifetime,
                };
                self.keep_tokens(session, user_id, &fresh).await?;
                audit!("oidc.refresh", user_id, provider = %tokens.provider, "provider access token refreshed");
                Ok(Some(fresh))
            }
            Err(TokenFailure::GrantRefused(error)) => {
                // Refused for good (revoked, expired, the user logged out at the provider):
                // this session's login through the provider is over.
                audit!("oidc.refresh_refused", user_id, provider = %tokens.provider, error = %error, "provider refused the refresh token: session ended");
                session.flush().await?;
                Err(err(
                    ErrorCode::SessionExpired,
                    "the provider ended this login (its refresh token was refused)",
                )
                .with_hint("log in again"))
            }
            // The provider refused Vestibule itself (a wrong secret or key: the operator's
            // configuration), not this login: the session and its refresh token stay, and work
            // again once the configuration is fixed (or on a correctly configured instance).
            // Like a provider that does not answer, it costs nothing while the access token is
            // still valid: the request goes on with it (the audit event has told the operator).
            Err(TokenFailure::ClientRejected(e)) if still_valid(tokens, at) => {
                tracing::warn!(provider = %tokens.provider, error = %e, "token refresh refused; the current access token is still valid");
                Ok(None)
            }
            Err(TokenFailure::ClientRejected(e)) => Err(e),
            Err(TokenFailure::Malformed(e) | TokenFailure::Unavailable(e)) => {
                tracing::warn!(provider = %tokens.provider, error = %e, "token refresh failed");
                if still_valid(tokens, at) {
                    Ok(None)
                } else {
                    Err(err(
                        ErrorCode::OidcProviderUnavailable,
                        "the provider did not answer the token refresh",
                    )
                    .with_retry_after(5))
                }
            }
        }
    }

    /// Waits for this session's turn to refresh across instances: the shared lock is taken
    /// ([`Turn::Mine`]), or another instance refreshed meanwhile and its tokens are in the store
    /// ([`Turn::Refreshed`]).
    ///
    /// The store is read with [`load_latest`](crate::session::SessionStore::load_latest), past
    /// any read cache: this instance's cached copy learns of another instance's refresh only
    /// when the invalidation arrives, and a decision taken on it would refresh again with the
    /// refresh token the other instance used up (a rotating provider refuses it and revokes the
    /// login: tests/it/oidc/refresh.rs).
    ///
    /// # Errors
    /// 503 `oidc_provider_unavailable` when another instance holds the lock past the wait, 503
    /// `store_unavailable`.
    async fn shared_turn(
        &self,
        store: &dyn crate::session::SessionStore,
        name: &str,
        key: &TokenHash,
        user_id: i64,
        tokens: ProviderTokens,
    ) -> Result<Turn> {
        let deadline = Instant::now() + SHARED_WAIT;
        loop {
            let lock = store.try_lock(name, SHARED_LOCK_TTL).await?;
            if lock == SharedLock::Local {
                return Ok(Turn::Mine(lock, Box::new(tokens)));
            }
            // Taken or not, another instance may have refreshed already: its tokens are in the
            // store, and no second refresh happens.
            let stored = self.stored_tokens(store, key, user_id).await?;
            if let Some(fresh) = &stored
                && !fresh.due(now())
                && fresh.access_token != tokens.access_token
            {
                store.unlock(name, &lock).await?;
                return Ok(Turn::Refreshed(fresh.clone()));
            }
            if lock != SharedLock::Busy {
                // Ours to refresh, with the newest refresh token there is.
                return Ok(Turn::Mine(lock, Box::new(stored.unwrap_or(tokens))));
            }
            if Instant::now() >= deadline {
                return Err(err(
                    ErrorCode::OidcProviderUnavailable,
                    "another instance is still refreshing this session's provider tokens",
                )
                .with_retry_after(1));
            }
            // Polled: the holder is another process (a refresh takes one provider round trip).
            tokio::time::sleep(SHARED_POLL).await;
        }
    }

    /// The provider tokens of session `key` as the shared store has them now (past any cache).
    async fn stored_tokens(
        &self,
        store: &dyn crate::session::SessionStore,
        key: &TokenHash,
        user_id: i64,
    ) -> Result<Option<ProviderTokens>> {
        let Some(record) = store.load_latest(key).await? else {
            return Ok(None);
        };
        self.tokens_in(&record.data, user_id)
    }

    /// The provider tokens kept in a session's stored `data` (logged in as `user_id`).
    ///
    /// # Errors
    /// `internal` when they do not open (the `secret_key` changed) or do not parse.
    pub(super) fn tokens_in(
        &self,
        data: &serde_json::Map<String, serde_json::Value>,
        user_id: i64,
    ) -> Result<Option<ProviderTokens>> {
        let Some(sealed) = data.get(TOKENS_KEY).and_then(|v| v.as_str()) else {
            return Ok(None);
        };
        let json = self.0.secrets.open(user_id, sealed)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(Error::internal)
    }

    /// Writes `fresh` into session `key` in the shared store now (not when the response
    /// leaves), so the instances waiting for the lock find it before it is released.
    async fn publish(
        &self,
        store: &dyn crate::session::SessionStore,
        key: &TokenHash,
        user_id: i64,
        fresh: &ProviderTokens,
    ) -> Result<()> {
        let Some(record) = store.load_latest(key).await? else {
            return Ok(());
        };
        let json = serde_json::to_vec(fresh).map_err(Error::internal)?;
        let sealed = self.0.secrets.seal(user_id, &json)?;
        let mut delta = Delta {
            last_seen: record.last_seen,
            expires_at: record.expires_at,
            ..Delta::default()
        };
        delta
            .set
            .insert(TOKENS_KEY.to_owned(), serde_json::Value::String(sealed));
        store.save(key, &delta).await?;
        Ok(())
    }
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTokens")
            .field("provider", &self.provider)
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("subject", &self.subject)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::TOKENS_DOMAIN;
    use crate::auth::mfa::SecretBox;

    #[test]
    fn debug_output_holds_no_token() {
        let t = super::ProviderTokens {
            provider: "idp".into(),
            access_token: "at-5ecret".into(),
            refresh_token: Some("rt-5ecret".into()),
            expires_at: Some(1),
            subject: "sub-1".into(),
            lifetime: Some(60),
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("5ecret"), "{shown}");
        assert!(
            shown.contains("sub-1") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn sealed_tokens_and_totp_secrets_do_not_open_as_each_other() {
        let totp = SecretBox::new(Some([7; 32]));
        let tokens = totp.clone().with_domain(TOKENS_DOMAIN);
        let secret = totp.seal(1, b"totp secret").expect("seal");
        let sealed = tokens.seal(1, br#"{"access_token":"a"}"#).expect("seal");
        assert_eq!(totp.open(1, &secret).expect("own domain"), b"totp secret");
        assert_eq!(
            tokens.open(1, &sealed).expect("own domain"),
            br#"{"access_token":"a"}"#
        );
        let e = tokens
            .open(1, &secret)
            .expect_err("a TOTP blob is no token");
        assert!(e.to_string().contains("provider tokens"), "{e}");
        assert!(
            totp.open(1, &sealed).is_err(),
            "a token blob is no TOTP secret"
        );
        assert!(tokens.open(2, &sealed).is_err(), "still bound to the user");
    }
}
