//! The token relay: the provider's tokens kept in the session (sealed), and the access token
//! handed to upstreams, refreshed first when due — one refresh per session at a time.

use std::sync::Arc;

use openidconnect::{OAuth2TokenResponse, RequestTokenError};
use serde::{Deserialize, Serialize};

use super::{RelyingParty, TOKENS_KEY, err};
use crate::error::{Error, ErrorCode, Result};
use crate::session::{Session, now};

/// The provider's tokens as the session keeps them (see [`TOKENS_KEY`]); never sent to the
/// browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// 401 `session_expired` (the refresh was refused: logged out), 503
    /// `oidc_provider_unavailable` (the provider did not answer and the token has expired), 503
    /// `store_unavailable`.
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
            .get_with(key, async { Arc::new(tokio::sync::Mutex::new(None)) })
            .await;
        let mut latest = flight.lock().await;
        if let Some(done) = latest.as_ref()
            && !done.due(at)
            && done.expires_at >= tokens.expires_at
        {
            // Another request of this session refreshed while this one waited.
            let done = done.clone();
            self.keep_tokens(session, user_id, &done).await?;
            return Ok(Some(done.access_token));
        }
        let Some(refresh) = tokens.refresh_token.clone() else {
            return Ok(Some(tokens.access_token));
        };
        let p = self.provider(&tokens.provider)?;
        let m = self.metadata(p, false).await?;
        let client = self.client(p, m)?;
        let answer = client
            .exchange_refresh_token(&openidconnect::RefreshToken::new(refresh.clone()))
            .map_err(|e| {
                err(
                    ErrorCode::OidcProviderUnavailable,
                    "the provider has no token endpoint",
                )
                .with_source(e)
            })?
            .request_async(&self.0.http)
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
                *latest = Some(fresh.clone());
                Ok(Some(fresh.access_token))
            }
            Err(RequestTokenError::ServerResponse(r)) => {
                // Refused for good (revoked, expired, the user logged out at the provider):
                // this session's login through the provider is over.
                audit!("oidc.refresh_refused", user_id, provider = %tokens.provider, error = %r.error().as_ref(), "provider refused the refresh token: session ended");
                session.flush().await?;
                Err(err(
                    ErrorCode::SessionExpired,
                    "the provider ended this login (its refresh token was refused)",
                )
                .with_hint("log in again"))
            }
            Err(e) => {
                tracing::warn!(provider = %tokens.provider, error = %e, "token refresh failed");
                if tokens.expires_at.is_some_and(|x| x > at) {
                    Ok(Some(tokens.access_token))
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
}

#[cfg(test)]
mod tests {
    use super::super::TOKENS_DOMAIN;
    use crate::auth::mfa::SecretBox;

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
        let e = tokens.open(1, &secret).expect_err("a TOTP blob is no token");
        assert!(e.to_string().contains("provider tokens"), "{e}");
        assert!(totp.open(1, &sealed).is_err(), "a token blob is no TOTP secret");
        assert!(tokens.open(2, &sealed).is_err(), "still bound to the user");
    }
}
