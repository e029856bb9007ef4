//! Sign-in through OpenID Connect providers: Vestibule as the relying party and the
//! backend-for-frontend that keeps the provider's tokens (IETF "OAuth 2.0 for Browser-Based
//! Applications", the BFF pattern).
//!
//! The protocol is `openidconnect`'s: discovery (the document's `issuer` must be the configured
//! one), the authorization URL with PKCE (S256), the code exchange as a confidential client, and
//! the ID token's validation — signature against the provider's JWKS with only the configured
//! algorithms (never `none`; HMAC with the client secret only when listed), issuer, audience,
//! expiry, nonce. What is Vestibule's own, and written here: where the flow's secrets live
//! between start and callback (the server-side session, single use), the `return_to` check
//! against the one [`OriginsPolicy`] (no open redirect), the RFC 9207 `iss` check against
//! mix-up, a fresh JWKS fetch when a token names a key the cached set lacks (key rotation),
//! and the mapping of an identity (issuer, subject) to a Vestibule user.

mod accounts;
mod client_auth;
mod http;
mod identities;
mod logout;
mod relay;
mod revocation;
mod section;
mod userinfo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

pub use self::client_auth::{AssertionKey, ClientAuth};
pub use self::identities::{Identities, Identity};
pub use self::logout::{LOGIN_KEY, SID_KEY};
pub use self::relay::ProviderTokens;
pub use self::section::{OidcSettings, ProviderSettings, RawClaims, RawOidc, RawProvider};
use crate::auth::UserStore;
use crate::auth::mfa::{Domain, SecretBox};
use crate::error::{Error, ErrorCode, Result};
use crate::origin::Origin;
use crate::origins::OriginsPolicy;
use crate::session::{Session, now};
use crate::token::{SecretToken, TokenHash, TokenKind};

/// The session key of a login between start and callback.
const FLOW_KEY: &str = "oidc.flow";
/// The session key of the provider's tokens after a login.
pub const TOKENS_KEY: &str = "oidc.tokens";
/// The associated-data domain of the provider tokens sealed in sessions: a TOTP secret's sealed
/// blob never opens as tokens, nor the other way round.
pub const TOKENS_DOMAIN: Domain = Domain {
    aad: "vestibule-oidc-tokens",
    what: "provider tokens",
};
/// How long discovered metadata (and its JWKS) is reused before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The password hash of a user created through a provider: no password verifies against it
/// (Django's unusable password), so the provider is its only way in until one is set.
pub const NO_PASSWORD: &str = "!";

/// A login between `/start` and `/callback`, kept in the server-side session (never in the
/// browser: the PKCE verifier and nonce are secrets of this login).
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    provider: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    expires_at: i64,
    /// A link from a logged-in session: the user the identity is linked to (no login happens).
    #[serde(default)]
    link_user: Option<i64>,
}

/// What the callback proved: who the provider says the user is, and its tokens.
#[derive(Debug)]
pub struct Verified {
    /// The provider's configured name.
    pub provider: String,
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// The claim configured as the username, when present.
    pub username: Option<String>,
    /// The e-mail claim.
    pub email: Option<String>,
    /// Whether the provider says the e-mail is verified.
    pub email_verified: bool,
    /// Whether `amr` shows a multi-factor login and the provider is trusted for it.
    pub trusted_mfa: bool,
    /// Where the browser goes afterwards.
    pub return_to: String,
    /// `Some(user)`: this flow links the identity to the logged-in `user` ([`RelyingParty::link`])
    /// instead of logging in.
    pub link_user: Option<i64>,
    /// The provider's tokens, to keep in the session.
    pub tokens: ProviderTokens,
    /// The ID token as issued (verified): `id_token_hint` at logout, its `sid` for back-channel
    /// logout (`logout.rs`).
    pub id_token: String,
}

/// A refused callback: the error, and the `return_to` to send it to when the flow was known.
#[derive(Debug)]
pub struct CallbackError {
    /// What went wrong.
    pub error: Error,
    /// Where the browser should be told (with `oidc_error=`); `None`: no flow was found.
    pub return_to: Option<String>,
}

/// The callback's query.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state sent at start.
    pub state: Option<String>,
    /// RFC 9207: the issuer that answered.
    pub iss: Option<String>,
    /// An error the provider answered instead of a code.
    pub error: Option<String>,
}

/// The configured relying party (cheap to clone).
#[derive(Debug, Clone)]
pub struct RelyingParty(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    settings: OidcSettings,
    public_origin: Origin,
    origins: Arc<OriginsPolicy>,
    http: http::Http,
    metadata: tokio::sync::Mutex<HashMap<String, (CoreProviderMetadata, Instant)>>,
    identities: Identities,
    users: UserStore,
    secrets: SecretBox,
    /// One refresh at a time per session (single-flight), and what it got: requests that waited
    /// take the refreshed tokens instead of refreshing again, and a failure holds off the next
    /// attempt for a moment. Idle entries go after 10 minutes.
    flights: moka::future::Cache<TokenHash, Arc<tokio::sync::Mutex<relay::Flight>>>,
    /// Token revocations under way ([`RelyingParty::settle`]).
    revoking: revocation::InFlight,
}

fn err(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::new(code, message)
}

impl RelyingParty {
    /// The relying party for `settings`; callbacks come back to `public_origin`.
    ///
    /// # Errors
    /// 500 `internal` when the HTTP client cannot be built (no TLS roots).
    pub fn new(
        settings: OidcSettings,
        public_origin: Origin,
        origins: Arc<OriginsPolicy>,
        identities: Identities,
        users: UserStore,
        secrets: SecretBox,
    ) -> Result<Self> {
        let http = http::Http::new(Duration::from_secs(10)).map_err(Error::internal)?;
        Ok(Self(Arc::new(Inner {
            settings,
            public_origin,
            origins,
            http,
            metadata: tokio::sync::Mutex::new(HashMap::new()),
            identities,
            users,
            secrets: secrets.with_domain(TOKENS_DOMAIN),
            flights: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            revoking: revocation::InFlight::default(),
        })))
    }

    /// The configured providers.
    pub fn providers(&self) -> &[ProviderSettings] {
        &self.0.settings.providers
    }

    /// The identities table.
    pub fn identities(&self) -> &Identities {
        &self.0.identities
    }

    fn provider(&self, name: &str) -> Result<&ProviderSettings> {
        self.0
            .settings
            .providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                err(
                    ErrorCode::OidcProviderUnknown,
                    "no OpenID provider of this name is configured",
                )
                .with_hint("the names are those of [[oidc.provider]] in the configuration")
            })
    }

    /// `{public_url}/auth/oidc/{name}/callback`: the redirect URI to register at the provider.
    pub fn callback_url(&self, name: &str) -> String {
        format!("{}/auth/oidc/{name}/callback", self.0.public_origin)
    }

    /// Checks `return_to`: an absolute URL whose origin is `public_url`'s or an allowed SPA
    /// origin, or a path on `public_url` (no open redirect). `None`: `public_url`'s root.
    ///
    /// # Errors
    /// 400 `oidc_return_to_refused`.
    pub fn check_return_to(&self, return_to: Option<&str>) -> Result<String> {
        let refused = || {
            err(
                ErrorCode::OidcReturnToRefused,
                "return_to must be on this server's origin or an allowed SPA origin",
            )
            .with_hint("add the SPA's origin to spa_origins, or pass a path such as /app")
        };
        let Some(raw) = return_to else {
            return Ok(format!("{}/", self.0.public_origin));
        };
        // A path: only a single leading slash (`//evil.com` and `/\evil.com` are other hosts to
        // a browser).
        let absolute = if raw.starts_with('/') {
            if raw.starts_with("//") || raw.starts_with("/\\") {
                return Err(refused());
            }
            format!("{}{raw}", self.0.public_origin)
        } else {
            raw.to_owned()
        };
        let url = url::Url::parse(&absolute).map_err(|_| refused())?;
        let origin = Origin::from_url(&url).ok_or_else(refused)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused());
        }
        if origin == self.0.public_origin || self.0.origins.is_allowed_spa(&origin) {
            Ok(url.to_string())
        } else {
            Err(refused())
        }
    }

    /// The provider's discovery document and keys, cached for an hour (`fresh`: fetched now,
    /// for a key the cached set lacks).
    async fn metadata(&self, p: &ProviderSettings, fresh: bool) -> Result<CoreProviderMetadata> {
        let mut cache = self.0.metadata.lock().await;
        if !fresh
            && let Some((m, at)) = cache.get(&p.name)
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| {
            err(
                ErrorCode::OidcProviderUnavailable,
                "the issuer URL is invalid",
            )
            .with_source(e)
        })?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.0.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %p.name, error = %e, "OpenID discovery failed");
                err(
                    ErrorCode::OidcProviderUnavailable,
                    "the OpenID provider did not answer its discovery document",
                )
                .with_hint("retry later; `vestibule doctor` checks the issuer")
                .with_retry_after(5)
            })?;
        cache.insert(p.name.clone(), (m.clone(), Instant::now()));
        Ok(m)
    }

    fn client(
        &self,
        p: &ProviderSettings,
        m: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        let redirect = RedirectUrl::new(self.callback_url(&p.name)).map_err(Error::internal)?;
        Ok(CoreClient::from_provider_metadata(
            m,
            ClientId::new(p.client_id.clone()),
            p.client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.0.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a login through `provider`: the flow (state, nonce, PKCE verifier, `return_to`)
    /// goes into the session; the answer is the provider's authorization URL.
    ///
    /// # Errors
    /// 404 `oidc_provider_unknown`, 400 `oidc_return_to_refused`, 503
    /// `oidc_provider_unavailable` or `store_unavailable`.
    pub async fn start(
        &self,
        session: &Session,
        provider: &str,
        return_to: Option<&str>,
    ) -> Result<String> {
        self.begin(session, provider, return_to, None).await
    }

    /// Starts linking an identity at `provider` to `user_id`, the user logged in to `session`
    /// (the caller checked the re-authentication): the same flow as [`start`](Self::start),
    /// which the callback completes with [`link`](Self::link) instead of a login.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_link(
        &self,
        session: &Session,
        provider: &str,
        return_to: Option<&str>,
        user_id: i64,
    ) -> Result<String> {
        self.begin(session, provider, return_to, Some(user_id))
            .await
    }

    async fn begin(
        &self,
        session: &Session,
        provider: &str,
        return_to: Option<&str>,
        link_user: Option<i64>,
    ) -> Result<String> {
        let p = self.provider(provider)?;
        let return_to = self.check_return_to(return_to)?;
        let m = self.metadata(p, false).await?;
        let client = self.client(p, m)?;
        // Every secret of the flow from Vestibule's CSPRNG (`token`).
        let state = SecretToken::generate(TokenKind::Session)
            .expose()
            .to_owned();
        let nonce = SecretToken::generate(TokenKind::Session)
            .expose()
            .to_owned();
        let verifier = PkceCodeVerifier::new(
            SecretToken::generate(TokenKind::Session)
                .expose()
                .replace('_', "-"),
        );
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let (st, nc) = (state.clone(), nonce.clone());
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(st),
                move || Nonce::new(nc),
            )
            .set_pkce_challenge(challenge);
        for s in &p.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, _, _) = req.url();
        let timeout = i64::try_from(self.0.settings.flow_timeout.as_secs()).unwrap_or(600);
        session
            .insert(
                FLOW_KEY,
                Flow {
                    provider: p.name.clone(),
                    state,
                    nonce,
                    pkce_verifier: verifier.secret().clone(),
                    return_to,
                    expires_at: now().saturating_add(timeout),
                    link_user,
                },
            )
            .await?;
        Ok(url.to_string())
    }

    /// Completes a login at `provider`'s callback: the flow is taken out of the session (single
    /// use), `state` compared in constant time, the `iss` parameter checked (mix-up), the code
    /// exchanged with the PKCE verifier, the ID token validated.
    ///
    /// # Errors
    /// [`CallbackError`]: 400 `oidc_state_mismatch` (no flow, another provider's, a wrong or
    /// expired state), 400 `oidc_issuer_mismatch`, 401 `oidc_provider_error` (the provider
    /// answered an error), 401 `oidc_code_rejected`, 401 `oidc_id_token_invalid`, 401
    /// `oidc_nonce_mismatch`, 401 `oidc_id_token_expired`, 502 `oidc_client_rejected` (the
    /// provider refused this server's client authentication), 503 `oidc_provider_unavailable`.
    pub async fn callback(
        &self,
        session: &Session,
        provider: &str,
        q: &CallbackQuery,
    ) -> Result<Verified, CallbackError> {
        let no_flow = |error| CallbackError {
            error,
            return_to: None,
        };
        let p = self.provider(provider).map_err(no_flow)?;
        let flow: Option<Flow> = session.get(FLOW_KEY).await.map_err(no_flow)?;
        let Some(flow) = flow else {
            return Err(no_flow(state_mismatch(
                "no login through a provider was started in this session (or it was completed already)",
            )));
        };
        // Single use: whatever happens next, this flow cannot be completed twice.
        session.remove(FLOW_KEY).await.map_err(no_flow)?;
        let return_to = flow.return_to.clone();
        let fail = |error| CallbackError {
            error,
            return_to: Some(return_to.clone()),
        };
        let state_ok = q
            .state
            .as_deref()
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(flow.state.as_bytes())));
        if flow.provider != p.name || !state_ok {
            audit!("oidc.refused", provider = %p.name, reason = "state_mismatch", "OpenID callback refused: wrong state");
            return Err(fail(state_mismatch(
                "the state does not match the login started in this session",
            )));
        }
        if flow.expires_at < now() {
            return Err(fail(state_mismatch(
                "the login took longer than oidc.flow_timeout",
            )));
        }
        let m = self.metadata(p, false).await.map_err(&fail)?;
        if let Some(iss) = &q.iss
            && iss.as_str() != m.issuer().as_str()
        {
            audit!("oidc.refused", provider = %p.name, reason = "issuer_mismatch", "OpenID callback refused: the response names another issuer");
            return Err(fail(err(
                ErrorCode::OidcIssuerMismatch,
                "the authorization response comes from another issuer than the one this login went to",
            )));
        }
        if let Some(e) = &q.error {
            let e: String = e
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(fail(err(
                ErrorCode::OidcProviderError,
                format!("the provider refused the login: {e}"),
            )));
        }
        let Some(code) = q.code.clone() else {
            return Err(fail(err(
                ErrorCode::OidcCodeRejected,
                "the callback has no authorization code",
            )));
        };
        let client = self.client(p, m.clone()).map_err(&fail)?;
        let grant = client_auth::Grant::Code {
            code,
            verifier: flow.pkce_verifier.clone(),
        };
        let response = self.token_request(p, &m, grant).await.map_err(|e| match e {
            client_auth::TokenFailure::ClientRejected(e) => fail(e),
            client_auth::TokenFailure::GrantRefused(code) => {
                audit!("oidc.refused", provider = %p.name, reason = "code_rejected", "OpenID code exchange refused by the provider");
                fail(err(
                    ErrorCode::OidcCodeRejected,
                    format!("the provider refused the authorization code: {code}"),
                ))
            }
            client_auth::TokenFailure::Malformed(e) | client_auth::TokenFailure::Unavailable(e) => {
                fail(e)
            }
        })?;
        let Some(id_token) = response.id_token() else {
            return Err(fail(err(
                ErrorCode::OidcIdTokenInvalid,
                "the provider answered no ID token",
            )));
        };
        let nonce = Nonce::new(flow.nonce.clone());
        let algs: Vec<CoreJwsSigningAlgorithm> = p
            .id_token_algs
            .iter()
            .filter_map(|a| serde_plain_alg(a))
            .collect();
        let verify = |c: &CoreClient<_, _, _, _, _, _>| -> std::result::Result<CoreIdTokenClaims, ClaimsVerificationError> {
            let verifier = c.id_token_verifier().set_allowed_algs(algs.clone());
            id_token.claims(&verifier, &nonce).cloned()
        };
        let claims = match verify(&client) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // A key the cached set lacks: the provider rotated its keys. Fetch once more.
                let m = self.metadata(p, true).await.map_err(&fail)?;
                let client = self.client(p, m).map_err(&fail)?;
                verify(&client)
            }
            other => other,
        }
        .map_err(|e| {
            let reason = match &e {
                ClaimsVerificationError::Expired(_) => "expired",
                ClaimsVerificationError::InvalidNonce(_) => "nonce",
                ClaimsVerificationError::InvalidIssuer(_) => "issuer",
                _ => "invalid",
            };
            audit!("oidc.refused", provider = %p.name, reason, "OpenID ID token refused");
            tracing::info!(provider = %p.name, error = %e, "ID token refused");
            fail(match e {
                ClaimsVerificationError::Expired(_) => {
                    err(ErrorCode::OidcIdTokenExpired, "the ID token has expired")
                }
                ClaimsVerificationError::InvalidNonce(_) => err(
                    ErrorCode::OidcNonceMismatch,
                    "the ID token was not issued for this login (nonce)",
                ),
                ClaimsVerificationError::InvalidIssuer(_) => err(
                    ErrorCode::OidcIssuerMismatch,
                    "the ID token names another issuer than the provider's",
                ),
                other => err(
                    ErrorCode::OidcIdTokenInvalid,
                    format!("the ID token does not verify: {other}"),
                ),
            })
        })?;
        let email = claims.email().map(|e| e.to_string());
        let mut claimed = userinfo::Claimed {
            username: userinfo::username(
                &p.username_claim,
                email.clone(),
                claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.to_string()),
                claims.subject().to_string(),
                claims.preferred_username().map(|u| u.to_string()),
            ),
            email,
            email_verified: claims.email_verified().unwrap_or(false),
        };
        if claimed.incomplete() {
            // A provider that keeps the scopes' claims out of the ID token (Core 5.4) has them
            // at its userinfo endpoint; its `sub` must be the ID token's.
            let request = client
                .user_info(
                    response.access_token().clone(),
                    Some(claims.subject().clone()),
                )
                .ok();
            if let Some(more) = userinfo::fetch(&self.0.http, request, &p.username_claim).await {
                claimed.fill(more);
            }
        }
        let mfa = claims.auth_method_refs().is_some_and(|amr| {
            amr.iter()
                .any(|m| matches!(m.as_str(), "mfa" | "otp" | "hwk" | "swk" | "fido" | "sc"))
        });
        let lifetime = response
            .expires_in()
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let expires_at = lifetime.map(|l| now().saturating_add(l));
        Ok(Verified {
            provider: p.name.clone(),
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            username: claimed.username,
            email: claimed.email,
            email_verified: claimed.email_verified,
            trusted_mfa: p.trust_mfa && mfa,
            return_to,
            link_user: flow.link_user,
            tokens: ProviderTokens {
                provider: p.name.clone(),
                access_token: response.access_token().secret().clone(),
                refresh_token: response.refresh_token().map(|t| t.secret().clone()),
                expires_at,
                subject: claims.subject().to_string(),
                lifetime,
            },
            id_token: id_token.to_string(),
        })
    }
}

fn state_mismatch(message: &str) -> Error {
    err(ErrorCode::OidcStateMismatch, message)
        .with_hint("start the login again from /auth/oidc/{provider}/start, in the same browser")
}

/// An algorithm name of the configuration as `openidconnect`'s type (the names were validated).
fn serde_plain_alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}
