//! RFC 7009 token revocation when a session ends: the provider's tokens that session kept for
//! the relay (refresh token first, then access token) are revoked at the provider's
//! `revocation_endpoint`. Without it, ending a session here left a refresh token alive at the
//! provider for its whole lifetime (hours to months), good for new access tokens to anyone
//! holding a copy: a leaked store backup, a log. Duende BFF revokes at logout by default too.
//!
//! The relying party is the sessions' [`EndHook`]: every way a session ends (logout,
//! `/auth/oidc/logout`, the session list, logout everywhere, a password change or reset, the
//! session cap, the provider's back-channel logout, and the administrator's `vestibule session
//! revoke`, `user disable`, `user delete` and `user set-password`) hands the ended records here
//! ([`crate::session::SessionManager::end`]). Not covered: sessions that expire (the purge
//! deletes them without reading them) and the other sessions the cookie store ends by bumping
//! the user's generation (their tokens are in the browsers' cookies).
//!
//! The requests are sent in the background, after the session has ended: a provider that is
//! down or slow must not hold the user's logout (its answer is logged, never the tokens). A
//! stopping server and a one-shot command wait for them ([`RelyingParty::settle`]).
//!
//! Written by hand rather than with `oauth2`'s `revoke_token`: that refuses every endpoint not
//! on https, a provider on loopback during development included (which the configuration
//! allows), and the request is one form POST with the client authentication the token endpoint
//! already uses ([`super::client_auth`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::client_auth::{ClientAuth, JWT_BEARER};
use super::relay::ProviderTokens;
use super::{ProviderSettings, RelyingParty};
use crate::session::{EndHook, Record};

impl EndHook for RelyingParty {
    /// Revokes, in the background, the provider tokens each ended record kept; nothing for a
    /// record that holds none. Tokens that no longer open (the `secret_key` changed) are
    /// logged and left.
    fn ended(&self, records: &[Record]) {
        for record in records {
            let Some(user_id) = record.user_id else {
                continue;
            };
            let tokens = match self.tokens_in(&record.data, user_id) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "an ended session's provider tokens do not open: not revoked");
                    continue;
                }
            };
            // Always on the runtime (the hook runs inside a request or a task); checked so
            // that a caller outside it loses the revocation, not the process.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!("no async runtime: an ended session's provider tokens not revoked");
                continue;
            };
            let rp = self.clone();
            let running = Running::enter(self);
            runtime.spawn(async move {
                let _running = running;
                rp.revoke(tokens).await;
            });
        }
    }
}

/// How many revocations are under way, so that a command or a stopping server can wait for
/// them ([`RelyingParty::settle`]) rather than drop them with the runtime.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One revocation under way; counted out when dropped, finished or not.
struct Running(RelyingParty);

impl Running {
    fn enter(rp: &RelyingParty) -> Self {
        rp.0.revoking.count.fetch_add(1, Ordering::SeqCst);
        Self(rp.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let f = &self.0.0.revoking;
        if f.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            f.idle.notify_waiters();
        }
    }
}

impl RelyingParty {
    /// Waits up to `limit` for the token revocations under way to finish; whether they all
    /// did. A one-shot command (`vestibule user disable`) and a stopping server call it, so
    /// that the requests are not dropped with the runtime.
    pub async fn settle(&self, limit: Duration) -> bool {
        let f = &self.0.revoking;
        tokio::time::timeout(limit, async {
            loop {
                let idle = f.idle.notified();
                tokio::pin!(idle);
                // Registered before the count is read, so a finish in between is not missed.
                idle.as_mut().enable();
                if f.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
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
                tracing::warn!(provider = %p.name, error = %e, "provider tokens of an ended session not revoked");
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
            "provider tokens of an ended session revoked (RFC 7009)"
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
