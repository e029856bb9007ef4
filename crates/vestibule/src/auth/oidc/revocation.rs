//! RFC 7009 token revocation at logout: when a user ends their own session, the provider's
//! tokens that session kept for the relay (refresh token first, then access token) are revoked
//! at the provider's `revocation_endpoint`. Without it a logout here left a refresh token alive
//! at the provider for its whole lifetime (hours to months), good for new access tokens to
//! anyone holding a copy: a leaked store backup, a log. Duende BFF revokes at logout by default
//! too.
//!
//! The request is sent in the background, after the logout has answered: a provider that is
//! down or slow must not hold the user's logout (its answer is logged, never the tokens).
//! Only the logouts that have the session at hand revoke (`/auth/logout`,
//! `/auth/oidc/logout`, and the caller's own session at `/auth/logout-all`); sessions ended by
//! expiry, by the session list or by the provider's back-channel logout are not read again for
//! it.
//!
//! Written by hand rather than with `oauth2`'s `revoke_token`: that refuses every endpoint not
//! on https, a provider on loopback during development included (which the configuration
//! allows), and the request is one form POST with the client authentication the token endpoint
//! already uses ([`super::client_auth`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::client_auth::{ClientAuth, JWT_BEARER};
use super::relay::ProviderTokens;
use super::{ProviderSettings, RelyingParty};
use crate::error::{ErrorCode, Result};
use crate::session::Session;

impl RelyingParty {
    /// Revokes the provider tokens kept in `session` (logged in as `user_id`) at the
    /// provider, in the background; nothing when the session holds none. Call it before the
    /// session's data is flushed.
    ///
    /// # Errors
    /// 503 `store_unavailable` (reading the session). Tokens that no longer open (the
    /// `secret_key` changed) are logged and left: the logout goes on.
    pub async fn revoke_at_logout(&self, session: &Session, user_id: i64) -> Result<()> {
        let tokens = match self.tokens(session, user_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(()),
            Err(e) if e.code() == ErrorCode::StoreUnavailable => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "the session's provider tokens do not open: not revoked");
                return Ok(());
            }
        };
        let rp = self.clone();
        tokio::spawn(async move { rp.revoke(tokens).await });
        Ok(())
    }

    /// Sends the revocation requests for `tokens`; logs what the provider answered.
    async fn revoke(&self, tokens: ProviderTokens) {
        let Ok(p) = self.provider(&tokens.provider) else {
            return;
        };
        let endpoint = match self.discovered_endpoint(p, "revocation_endpoint").await {
            Ok(Some(e)) => e,
            Ok(None) => {
                tracing::debug!(provider = %p.name, "the provider has no revocation_endpoint");
                return;
            }
            Err(e) => {
                tracing::warn!(provider = %p.name, error = %e, "tokens not revoked at logout");
                return;
            }
        };
        // The refresh token first: revoking it ends the grant at most providers, and RFC 7009
        // (2.1) asks them to end its access tokens too. The access token is sent anyway, for
        // the providers that keep it alive until it expires.
        let mut answers = Vec::with_capacity(2);
        if let Some(refresh) = &tokens.refresh_token {
            answers.push(
                self.revoke_one(p, &endpoint, refresh, "refresh_token")
                    .await,
            );
        }
        answers.push(
            self.revoke_one(p, &endpoint, &tokens.access_token, "access_token")
                .await,
        );
        let revoked = answers.iter().all(|a| *a == Some(200));
        audit!(
            "oidc.tokens_revoked",
            provider = %p.name,
            revoked,
            answers = ?answers,
            "provider tokens revoked at logout (RFC 7009)"
        );
    }

    /// One revocation request; the HTTP status, `None` when the provider did not answer.
    async fn revoke_one(
        &self,
        p: &ProviderSettings,
        endpoint: &url::Url,
        token: &str,
        hint: &'static str,
    ) -> Option<u16> {
        let mut form: Vec<(&str, String)> = vec![
            ("token", token.to_owned()),
            ("token_type_hint", hint.into()),
        ];
        let mut req = self.0.http.reqwest().post(endpoint.clone());
        // The client authenticates as at the token endpoint (RFC 7009 2.1).
        match &p.client_auth {
            ClientAuth::SecretBasic => {
                // RFC 6749 2.3.1: id and secret form-encoded before the Basic encoding.
                let enc = |s: &str| -> String {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
                };
                let secret = p.client_secret.as_ref().map_or("", |s| s.0.as_str());
                let pair = format!("{}:{}", enc(&p.client_id), enc(secret));
                req = req.header(
                    reqwest::header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(pair)),
                );
            }
            ClientAuth::SecretPost => {
                form.push(("client_id", p.client_id.clone()));
                let secret = p.client_secret.as_ref().map(|s| s.0.clone());
                form.push(("client_secret", secret.unwrap_or_default()));
            }
            ClientAuth::PrivateKeyJwt(key) => {
                // The audience is the issuer identifier (the configured one, which the
                // discovery document had to name), not the token endpoint: this assertion goes
                // to another endpoint of the document, and one with the token endpoint as its
                // audience, sent to a `revocation_endpoint` a malicious provider points at
                // itself while naming an honest provider's token endpoint, could be replayed
                // there when the same key is registered at both (the 2025 private_key_jwt
                // audience-injection advisories; the OpenID specifications now ask for the
                // issuer).
                let assertion = key
                    .assertion(&p.client_id, &p.issuer, crate::session::now())
                    .ok()?;
                form.push(("client_id", p.client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER.to_owned()));
                form.push(("client_assertion", assertion));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let req = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                if status != 200 {
                    tracing::warn!(provider = %p.name, status, hint, "the provider refused a token revocation");
                }
                Some(status)
            }
            Err(e) => {
                tracing::warn!(provider = %p.name, error = %e, hint, "token revocation did not reach the provider");
                None
            }
        }
    }
}
