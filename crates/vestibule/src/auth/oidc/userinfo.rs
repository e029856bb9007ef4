//! Claims the ID token lacks, from the provider's userinfo endpoint (OpenID Connect Core 5.3.2):
//! a provider that conforms to section 5.4 puts the scopes' claims (`email`, `preferred_username`,
//! …) there, not in the ID token of a code flow. Asked only when a claim Vestibule uses is
//! missing; the answer's `sub` must be the ID token's (`openidconnect` checks it).

use openidconnect::StandardClaims;
use openidconnect::core::{CoreGenderClaim, CoreUserInfoClaims};

use super::http::Http;

/// The claims a login uses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Claimed {
    /// The claim configured as the username.
    pub(super) username: Option<String>,
    /// `email`.
    pub(super) email: Option<String>,
    /// `email_verified`.
    pub(super) email_verified: bool,
}

impl Claimed {
    /// Whether a claim is missing that the userinfo endpoint may have.
    pub(super) fn incomplete(&self) -> bool {
        self.username.is_none() || self.email.is_none()
    }

    /// Fills what is missing from `more` (what the ID token said wins).
    pub(super) fn fill(&mut self, more: Claimed) {
        if self.username.is_none() {
            self.username = more.username;
        }
        if self.email.is_none() {
            self.email = more.email;
            self.email_verified = more.email_verified;
        }
    }
}

/// The claim named by `oidc.provider.claims.username` among a token's: one rule for the ID
/// token and the userinfo answer.
pub(super) fn username(
    claim: &str,
    email: Option<String>,
    name: Option<String>,
    subject: String,
    preferred_username: Option<String>,
) -> Option<String> {
    match claim {
        "email" => email,
        "name" => name,
        "sub" => Some(subject),
        _ => preferred_username,
    }
}

/// The claims a login uses in a userinfo answer `c`.
pub(super) fn claimed(claim: &str, c: &StandardClaims<CoreGenderClaim>) -> Claimed {
    let email = c.email().map(|e| e.to_string());
    Claimed {
        username: username(
            claim,
            email.clone(),
            c.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            c.subject().to_string(),
            c.preferred_username().map(|u| u.to_string()),
        ),
        email,
        email_verified: c.email_verified().unwrap_or(false),
    }
}

/// The request of a client that knows a userinfo endpoint.
pub(super) type Request<'a> = openidconnect::UserInfoRequest<
    'a,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
>;

/// Asks the userinfo endpoint (`request`: `None` when the provider has none); `None` (logged)
/// when it does not answer as it should: the login goes on with the ID token's claims.
pub(super) async fn fetch(
    http: &Http,
    request: Option<Request<'_>>,
    claim: &str,
) -> Option<Claimed> {
    let request = request?;
    match request.request_async(http).await {
        Ok(info) => {
            let info: CoreUserInfoClaims = info;
            Some(claimed(claim, info.standard_claims()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "userinfo request failed: going on with the ID token's claims");
            None
        }
    }
}
