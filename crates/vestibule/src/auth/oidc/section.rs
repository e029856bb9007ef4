//! `[oidc]` and `[[oidc.provider]]` as written in `vestibule.toml`, and their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client_auth::{AssertionKey, ClientAuth, METHODS};
use crate::problem::Problems;
use crate::settings::SecretString;

/// `[oidc]`: sign-in through OpenID Connect providers.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawOidc {
    /// Whether a first login through a provider creates a Vestibule user (named after the
    /// provider's `preferred_username`, or the `claims.username` claim).
    pub signup: bool,
    /// Whether a first login whose e-mail the provider marks `email_verified` is linked to the
    /// existing user with that username (usernames are e-mail addresses on such servers). Off:
    /// no account is ever taken over through an e-mail claim.
    pub link_verified_email: bool,
    /// How long a login started at `/auth/oidc/{provider}/start` may take to come back ("10m").
    pub flow_timeout: String,
    /// The providers.
    pub provider: Vec<RawProvider>,
}

impl Default for RawOidc {
    fn default() -> Self {
        Self {
            signup: false,
            link_verified_email: false,
            flow_timeout: "10m".into(),
            provider: Vec::new(),
        }
    }
}

/// `[[oidc.provider]]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawProvider {
    /// The name in the URLs (`/auth/oidc/{name}/start`): lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// The label of the demo page's button ("Sign in with …"); default: the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The issuer URL; `{issuer}/.well-known/openid-configuration` must answer.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret (`client_secret_basic` and `client_secret_post`; with
    /// `private_key_jwt` only to verify ID tokens signed with it, `HS256`…). Keep it out of the
    /// file: `VESTIBULE_OIDC__…` or a secrets manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretString>,
    /// How Vestibule authenticates to the provider's token endpoint (the code exchange and every
    /// refresh): `client_secret_basic` (the secret in the `Authorization` header),
    /// `client_secret_post` (in the form body) or `private_key_jwt` (a JWT signed with
    /// `private_key_file`, RFC 7523: no shared secret). The provider must have the client
    /// registered with the same method.
    pub client_auth: String,
    /// `private_key_jwt`: the PEM file of the client's private key, unencrypted — RSA (signs
    /// RS256, 2048 bits at least) or EC P-256 (ES256), in PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`). Read and checked at start (a
    /// relative path from the working directory); register its public key at the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    /// `private_key_jwt`: the `kid` of the assertions' header, as registered with the public key
    /// at the provider (needed when the provider holds several keys for the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// ID-token signature algorithms accepted. `none` is never accepted; `HS256`/`HS384`/`HS512`
    /// (signed with the client secret) only when listed here.
    pub id_token_algs: Vec<String>,
    /// Which claims name the user.
    pub claims: RawClaims,
    /// Whether the provider's own multi-factor login (`amr` with `mfa`, `otp`, `hwk`, `swk`
    /// or `fido`) stands in for Vestibule's second factor. Off: a user with a TOTP or passkey
    /// still proves it after the provider's login.
    pub trust_mfa: bool,
}

impl Default for RawProvider {
    fn default() -> Self {
        Self {
            name: String::new(),
            label: None,
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_auth: "client_secret_basic".into(),
            private_key_file: None,
            key_id: None,
            scopes: vec!["profile".into(), "email".into()],
            id_token_algs: vec![
                "RS256".into(),
                "PS256".into(),
                "ES256".into(),
                "EdDSA".into(),
            ],
            claims: RawClaims::default(),
            trust_mfa: false,
        }
    }
}

/// `[oidc.provider.claims]`: the claims mapping.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawClaims {
    /// The claim a new user's username is taken from: `preferred_username`, `email`, `name`
    /// or `sub`.
    pub username: String,
}

impl Default for RawClaims {
    fn default() -> Self {
        Self {
            username: "preferred_username".into(),
        }
    }
}

/// The algorithms an ID token may be signed with (RFC 7518 names; `none` is not one).
const ASYMMETRIC: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];
const HMAC: &[&str] = &["HS256", "HS384", "HS512"];
/// The claims a username can come from.
const USERNAME_CLAIMS: &[&str] = &["preferred_username", "email", "name", "sub"];

/// One provider, validated.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// URL name.
    pub name: String,
    /// Button label.
    pub label: String,
    /// Issuer URL as configured (compared exactly with `iss`).
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Option<SecretString>,
    /// How the token endpoint is told who Vestibule is (with the key for `private_key_jwt`).
    pub client_auth: ClientAuth,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// Accepted ID-token algorithms (validated names).
    pub id_token_algs: Vec<String>,
    /// The username claim.
    pub username_claim: String,
    /// Whether the provider's MFA replaces Vestibule's second factor.
    pub trust_mfa: bool,
}

/// `[oidc]` validated.
#[derive(Debug, Clone, Default)]
pub struct OidcSettings {
    /// First logins create users.
    pub signup: bool,
    /// Link by a verified e-mail claim.
    pub link_verified_email: bool,
    /// Longest start → callback.
    pub flow_timeout: Duration,
    /// Providers, in configuration order.
    pub providers: Vec<ProviderSettings>,
}

impl RawOidc {
    /// Every `[oidc]` value. An issuer that is plain http off loopback is refused (its tokens
    /// would travel in clear).
    pub fn validate(&self, p: &mut Problems) -> OidcSettings {
        let flow_timeout = p
            .duration("oidc.flow_timeout", &self.flow_timeout)
            .unwrap_or(Duration::from_secs(600));
        let mut providers = Vec::new();
        for (i, raw) in self.provider.iter().enumerate() {
            let key = |k: &str| format!("oidc.provider[{i}].{k}");
            let name_ok = !raw.name.is_empty()
                && raw.name.len() <= 64
                && raw.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                p.add(
                    &key("name"),
                    format!(
                        "{:?} must be 1-64 lowercase letters, digits, '-' or '_' (it is part of /auth/oidc/{{name}}/callback)",
                        raw.name
                    ),
                );
            }
            if self.provider[..i].iter().any(|o| o.name == raw.name) {
                p.add(&key("name"), format!("{:?} is used twice", raw.name));
            }
            match url::Url::parse(&raw.issuer) {
                Ok(u) if u.scheme() == "https" => {}
                Ok(u)
                    if u.scheme() == "http"
                        && u.host_str().is_some_and(|h| {
                            h == "localhost"
                                || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
                                || h.trim_matches(['[', ']'])
                                    .parse::<std::net::IpAddr>()
                                    .is_ok_and(|a| a.is_loopback())
                        }) => {}
                _ => p.add(
                    &key("issuer"),
                    format!(
                        "{:?} must be an https URL (plain http only on loopback, for tests)",
                        raw.issuer
                    ),
                ),
            }
            if raw.client_id.is_empty() {
                p.add(&key("client_id"), "is required".into());
            }
            let client_auth = client_auth(raw, &key, p);
            let has_secret = raw.client_secret.as_ref().is_some_and(|s| !s.0.is_empty());
            if !has_secret && !matches!(client_auth, Some(ClientAuth::PrivateKeyJwt(_))) {
                p.add(
                    &key("client_secret"),
                    format!(
                        "is required with client_auth = {:?} (a confidential client: Vestibule is the backend that holds the tokens); client_auth = \"private_key_jwt\" needs a private_key_file instead",
                        raw.client_auth
                    ),
                );
            }
            let mut algs = Vec::new();
            for alg in &raw.id_token_algs {
                if ASYMMETRIC.contains(&alg.as_str()) {
                    algs.push(alg.clone());
                } else if HMAC.contains(&alg.as_str()) {
                    // Listed by the operator: the provider signs with the client secret, which
                    // must then be set (an empty key would let anyone sign).
                    if !has_secret {
                        p.add(
                            &key("id_token_algs"),
                            format!("{alg:?} is verified with the client secret: set client_secret, or leave {alg:?} out"),
                        );
                    }
                    algs.push(alg.clone());
                } else {
                    p.add(
                        &key("id_token_algs"),
                        format!(
                            "{alg:?} is not accepted: use {} (or HS256/HS384/HS512 when the provider signs with the client secret); `none` never",
                            ASYMMETRIC.join(", ")
                        ),
                    );
                }
            }
            if algs.is_empty() && !raw.id_token_algs.is_empty() {
                // Said above.
            } else if algs.is_empty() {
                p.add(
                    &key("id_token_algs"),
                    "must name at least one algorithm".into(),
                );
            }
            if !USERNAME_CLAIMS.contains(&raw.claims.username.as_str()) {
                p.add(
                    &key("claims.username"),
                    format!(
                        "{:?} must be one of {}",
                        raw.claims.username,
                        USERNAME_CLAIMS.join(", ")
                    ),
                );
            }
            providers.push(ProviderSettings {
                name: raw.name.clone(),
                label: raw.label.clone().unwrap_or_else(|| raw.name.clone()),
                issuer: raw.issuer.clone(),
                client_id: raw.client_id.clone(),
                client_secret: raw.client_secret.clone().filter(|s| !s.0.is_empty()),
                client_auth: client_auth.unwrap_or(ClientAuth::SecretBasic),
                scopes: raw.scopes.clone(),
                id_token_algs: algs,
                username_claim: raw.claims.username.clone(),
                trust_mfa: raw.trust_mfa,
            });
        }
        OidcSettings {
            signup: self.signup,
            link_verified_email: self.link_verified_email,
            flow_timeout,
            providers,
        }
    }
}

/// `client_auth` with its key: `None` (after saying why) when the method is unknown or its key
/// cannot be used.
fn client_auth(
    raw: &RawProvider,
    key: &dyn Fn(&str) -> String,
    p: &mut Problems,
) -> Option<ClientAuth> {
    let jwt_only = |p: &mut Problems, k: &str| {
        p.add(
            &key(k),
            format!(
                "is used only with client_auth = \"private_key_jwt\" (client_auth is {:?})",
                raw.client_auth
            ),
        );
    };
    match raw.client_auth.as_str() {
        "client_secret_basic" | "client_secret_post" => {
            if raw.private_key_file.is_some() {
                jwt_only(p, "private_key_file");
            }
            if raw.key_id.is_some() {
                jwt_only(p, "key_id");
            }
            Some(if raw.client_auth == "client_secret_post" {
                ClientAuth::SecretPost
            } else {
                ClientAuth::SecretBasic
            })
        }
        "private_key_jwt" => {
            let kid = raw.key_id.clone();
            if let Some(kid) = &kid
                && (kid.is_empty() || kid.len() > 256 || kid.chars().any(char::is_control))
            {
                p.add(
                    &key("key_id"),
                    "must be 1-256 characters without control characters (the kid registered at the provider)".into(),
                );
                return None;
            }
            let Some(file) = raw.private_key_file.as_deref().filter(|f| !f.is_empty()) else {
                p.add(
                    &key("private_key_file"),
                    "is required with client_auth = \"private_key_jwt\": the PEM file of the client's private key (RSA or EC P-256)".into(),
                );
                return None;
            };
            let pem = match std::fs::read(file) {
                Ok(pem) => pem,
                Err(e) => {
                    p.add(
                        &key("private_key_file"),
                        format!("cannot read {file:?}: {e}"),
                    );
                    return None;
                }
            };
            match AssertionKey::from_pem(&pem, kid) {
                Ok(k) => Some(ClientAuth::PrivateKeyJwt(std::sync::Arc::new(k))),
                Err(why) => {
                    p.add(&key("private_key_file"), format!("{file:?} {why}"));
                    None
                }
            }
        }
        other => {
            p.add(
                &key("client_auth"),
                format!("{other:?} must be one of {}", METHODS.join(", ")),
            );
            None
        }
    }
}
