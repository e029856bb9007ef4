//! How Vestibule proves who it is at a provider's token endpoint (OAuth 2.0 client
//! authentication, OpenID Connect Core 9), and the one function every token request goes
//! through: the code exchange at the callback and the relay's refresh both call
//! [`RelyingParty::token_request`], so the method and the handling of `invalid_client` live here
//! only.
//!
//! - `client_secret_basic`: the secret in the `Authorization` header (the default).
//! - `client_secret_post`: the secret in the form body.
//! - `private_key_jwt`: no shared secret; a short-lived JWT signed with the client's private key
//!   (RFC 7523 section 2.2) rides in the body as `client_assertion`.
//!
//! `openidconnect` (through `oauth2` 5) sends only a client secret, in the header or the body;
//! it has no client assertions (its endpoint code carries "FIXME: add support for auth
//! extensions? e.g., client_secret_jwt and private_key_jwt"), but its token requests take extra
//! form parameters. So the assertion is built here by hand — a compact JWS is three base64url
//! parts — and signed with aws-lc-rs, the crypto library reqwest's rustls already links (ring,
//! also in the tree, cannot read SEC1 EC keys); the PEM is read with rustls-pki-types. No new
//! crate.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreProviderMetadata, CoreTokenResponse};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, PkceCodeVerifier, RefreshToken,
    RequestTokenError,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::{ProviderSettings, RelyingParty, err};
use crate::error::{Error, ErrorCode};

/// RFC 7523 section 2.2: the `client_assertion_type` of a JWT client assertion.
pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid: one token request, plus clock skew. The provider keeps each
/// `jti` until `exp` to refuse a replay, so a short life also bounds what it must remember.
const ASSERTION_LIFETIME: i64 = 60;

/// The configuration names of the methods, in `client_auth`.
pub(super) const METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// How a provider's token endpoint is told who Vestibule is (`client_auth`).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// The client secret in the `Authorization: Basic` header.
    SecretBasic,
    /// The client secret in the form body (`client_secret`).
    SecretPost,
    /// A JWT signed with this key (`client_assertion`); no secret is sent.
    PrivateKeyJwt(Arc<AssertionKey>),
}

impl ClientAuth {
    /// The method's registered name (RFC 7591 `token_endpoint_auth_method`).
    pub fn name(&self) -> &'static str {
        match self {
            ClientAuth::SecretBasic => "client_secret_basic",
            ClientAuth::SecretPost => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// The private key client assertions are signed with: RSA (RS256) or EC P-256 (ES256).
pub struct AssertionKey {
    key: SigningKey,
    kid: Option<String>,
}

enum SigningKey {
    Rs256(aws_lc_rs::signature::RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl std::fmt::Debug for AssertionKey {
    // Never the key material (settings get logged).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionKey {
    /// Reads an unencrypted private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN
    /// RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`). RSA keys sign RS256 (2048 bits at
    /// least), EC keys on P-256 sign ES256; `kid` becomes the JWS header's `kid`.
    ///
    /// # Errors
    /// What is wrong with the file, in words for a configuration error.
    pub fn from_pem(pem: &[u8], kid: Option<String>) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => "holds no unencrypted private key \
                (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY; an encrypted \
                key must be decrypted first, a public key or certificate is not enough)"
                .to_owned(),
            other => format!("is not valid PEM: {other:?}"),
        })?;
        let rsa = |r: Result<_, aws_lc_rs::error::KeyRejected>| {
            r.map(SigningKey::Rs256).map_err(|e| {
                format!(
                    "holds an RSA key that cannot sign RS256 ({}; at least 2048 bits)",
                    e.description_()
                )
            })
        };
        let p256 = |der: &[u8]| {
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(SigningKey::Es256)
        };
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => rsa(aws_lc_rs::signature::RsaKeyPair::from_der(
                k.secret_pkcs1_der(),
            ))?,
            PrivateKeyDer::Sec1(k) => p256(k.secret_sec1_der()).map_err(|_| {
                "holds an EC key that is not on P-256 (ES256 is the EC algorithm supported)"
                    .to_owned()
            })?,
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                match aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der) {
                    Ok(k) => SigningKey::Rs256(k),
                    Err(e) if e.description_() != "WrongAlgorithm" => rsa(Err(e))?,
                    Err(_) => p256(der).map_err(|_| {
                        "holds a PKCS#8 key that is neither RSA nor EC on P-256 (supported: \
                         RS256 and ES256)"
                            .to_owned()
                    })?,
                }
            }
            _ => return Err("holds a key type that is not supported".into()),
        };
        Ok(Self { key, kid })
    }

    /// The JWS algorithm: `RS256` or `ES256`.
    pub fn alg(&self) -> &'static str {
        match self.key {
            SigningKey::Rs256(_) => "RS256",
            SigningKey::Es256(_) => "ES256",
        }
    }

    /// A fresh client assertion (RFC 7523 section 3, OpenID Connect Core 9): `iss` and `sub`
    /// the client id, `aud` the `audience` given (the token endpoint for a token request, the
    /// issuer for any other endpoint), a random `jti` (providers refuse a
    /// `jti` seen before, so every request has its own), issued at `at` and valid for
    /// [`ASSERTION_LIFETIME`].
    ///
    /// # Errors
    /// 500 `internal` when the CSPRNG or the signature fails.
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        at: i64,
    ) -> crate::error::Result<String> {
        let mut jti = [0u8; 32];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| internal("the CSPRNG failed"))?;
        let mut header = serde_json::json!({"alg": self.alg(), "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "iat": at,
            "exp": at.saturating_add(ASSERTION_LIFETIME),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    fn sign(&self, message: &[u8]) -> crate::error::Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Rs256(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| internal("RS256 signing failed"))?;
                Ok(out)
            }
            // The FIXED format: r ‖ s, as JWS ES256 wants (RFC 7518 section 3.4), not ASN.1.
            SigningKey::Es256(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| internal("ES256 signing failed")),
        }
    }
}

fn internal(what: &'static str) -> Error {
    Error::internal(std::io::Error::other(what))
}

/// What a token request is for.
pub(super) enum Grant {
    /// The callback's code exchange, with the login's PKCE verifier.
    Code {
        /// The authorization code.
        code: String,
        /// The PKCE verifier.
        verifier: String,
    },
    /// The relay's refresh.
    Refresh(String),
}

/// A token request that did not give tokens.
#[derive(Debug)]
pub(super) enum TokenFailure {
    /// `invalid_client`: the provider does not accept Vestibule's client authentication — a
    /// wrong secret or key, or a method the client is not registered for. The operator's
    /// configuration, not the user's doing: 502 `oidc_client_rejected`.
    ClientRejected(Error),
    /// Another OAuth error: the grant itself is refused (`invalid_grant`: a used, expired or
    /// revoked code or refresh token). The error code, sanitized.
    GrantRefused(String),
    /// The answer does not parse (a malformed token response or ID token).
    Malformed(Error),
    /// No usable answer (connection, timeout, no token endpoint, not JSON).
    Unavailable(Error),
}

/// 502 `oidc_client_rejected`.
fn client_rejected(p: &ProviderSettings) -> Error {
    err(
        ErrorCode::OidcClientRejected,
        format!(
            "the provider refused this server's client authentication ({}, client {:?})",
            p.client_auth.name(),
            p.client_id
        ),
    )
    .with_hint(
        "the operator's configuration: check oidc.provider's client_id, client_secret or \
         private_key_file and client_auth against the client registered at the provider",
    )
}

impl RelyingParty {
    /// Sends `grant` to `p`'s token endpoint (from its metadata `m`), authenticated by its
    /// `client_auth`: every token request of the relying party goes through here.
    ///
    /// # Errors
    /// [`TokenFailure`].
    pub(super) async fn token_request(
        &self,
        p: &ProviderSettings,
        m: &CoreProviderMetadata,
        grant: Grant,
    ) -> Result<CoreTokenResponse, TokenFailure> {
        let no_endpoint = |e: openidconnect::ConfigurationError| {
            TokenFailure::Unavailable(
                err(
                    ErrorCode::OidcProviderUnavailable,
                    "the provider has no token endpoint",
                )
                .with_source(e),
            )
        };
        let Some(endpoint) = m.token_endpoint() else {
            return Err(no_endpoint(openidconnect::ConfigurationError::MissingUrl(
                "token",
            )));
        };
        // The secret goes only where the method says: none at all with private_key_jwt (the
        // client id then travels in the body, beside the assertion).
        let (secret, auth_type, assertion) = match &p.client_auth {
            ClientAuth::SecretBasic => (p.client_secret.as_ref(), AuthType::BasicAuth, None),
            ClientAuth::SecretPost => (p.client_secret.as_ref(), AuthType::RequestBody, None),
            ClientAuth::PrivateKeyJwt(key) => {
                // The audience is the token endpoint the assertion is sent to (OpenID Connect
                // Core 9's SHOULD, and what every provider accepts). Sent nowhere else (the
                // revocation at logout names the issuer instead: revocation.rs says why), and
                // the endpoint comes from the discovery document whose issuer was checked.
                let assertion = key
                    .assertion(&p.client_id, endpoint.as_str(), crate::session::now())
                    .map_err(TokenFailure::Unavailable)?;
                (None, AuthType::RequestBody, Some(assertion))
            }
        };
        let client = openidconnect::core::CoreClient::from_provider_metadata(
            m.clone(),
            ClientId::new(p.client_id.clone()),
            secret.map(|s| ClientSecret::new(s.0.clone())),
        )
        .set_auth_type(auth_type)
        .set_redirect_uri(
            openidconnect::RedirectUrl::new(self.callback_url(&p.name))
                .map_err(|e| TokenFailure::Unavailable(Error::internal(e)))?,
        );
        let extra = |a: &Option<String>| -> Vec<(&'static str, String)> {
            a.iter()
                .flat_map(|a| {
                    [
                        ("client_assertion_type", JWT_BEARER.to_owned()),
                        ("client_assertion", a.clone()),
                    ]
                })
                .collect()
        };
        let answer = match grant {
            Grant::Code { code, verifier } => {
                let mut req = client
                    .exchange_code(AuthorizationCode::new(code))
                    .map_err(no_endpoint)?
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier));
                for (k, v) in extra(&assertion) {
                    req = req.add_extra_param(k, v);
                }
                req.request_async(&self.0.http).await
            }
            Grant::Refresh(token) => {
                let token = RefreshToken::new(token);
                let mut req = client.exchange_refresh_token(&token).map_err(no_endpoint)?;
                for (k, v) in extra(&assertion) {
                    req = req.add_extra_param(k, v);
                }
                req.request_async(&self.0.http).await
            }
        };
        answer.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) if r.error().as_ref() == "invalid_client" => {
                audit!("oidc.client_rejected", provider = %p.name, method = p.client_auth.name(), "the provider refused Vestibule's client authentication (invalid_client): check the provider's configuration");
                TokenFailure::ClientRejected(client_rejected(p))
            }
            RequestTokenError::ServerResponse(r) => TokenFailure::GrantRefused(
                r.error()
                    .as_ref()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(64)
                    .collect(),
            ),
            RequestTokenError::Parse(e, _) => TokenFailure::Malformed(
                err(
                    ErrorCode::OidcIdTokenInvalid,
                    "the token response does not parse (a malformed ID token?)",
                )
                .with_source(e),
            ),
            other => TokenFailure::Unavailable(
                err(
                    ErrorCode::OidcProviderUnavailable,
                    "the provider's token endpoint did not answer as expected",
                )
                .with_source(other),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{self, KeyPair, UnparsedPublicKey};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use rustls_pki_types::PrivatePkcs1KeyDer;
    use rustls_pki_types::pem::PemObject;
    use serde_json::Value;

    use super::AssertionKey;

    /// The repository's PKCS#1 fixture (`BEGIN RSA PRIVATE KEY`, made once with openssl).
    const RSA_PKCS1: &str = include_str!("../../../tests/it/fixtures/oidc-test-rsa.pem");

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn part(jws: &str, i: usize) -> Value {
        let p = jws.split('.').nth(i).expect("part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("json")
    }

    /// Checks an assertion's header, claims and signature against `public` (its algorithm `alg`).
    fn verify(
        jws: &str,
        alg: &'static dyn signature::VerificationAlgorithm,
        public: &[u8],
        name: &str,
    ) -> Value {
        let (input, sig) = jws.rsplit_once('.').expect("three parts");
        UnparsedPublicKey::new(alg, public)
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).expect("signature"),
            )
            .expect("the signature verifies with the public key");
        let header = part(jws, 0);
        assert_eq!(header["alg"], name);
        assert_eq!(header["typ"], "JWT");
        let claims = part(jws, 1);
        assert_eq!(claims["iss"], "vestibule-jwt");
        assert_eq!(claims["sub"], "vestibule-jwt");
        assert_eq!(claims["aud"], "https://idp.example/token");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_060, "short-lived");
        claims
    }

    #[test]
    fn rsa_keys_in_pkcs1_and_pkcs8_sign_rs256_with_the_kid() {
        let key =
            AssertionKey::from_pem(RSA_PKCS1.as_bytes(), Some("k1".into())).expect("PKCS#1 reads");
        assert_eq!(key.alg(), "RS256");
        let pkcs1 = PrivatePkcs1KeyDer::from_pem_slice(RSA_PKCS1.as_bytes()).expect("pem");
        let parsed = aws_lc_rs::rsa::KeyPair::from_der(pkcs1.secret_pkcs1_der()).expect("rsa");
        let jws = key
            .assertion("vestibule-jwt", "https://idp.example/token", 1_700_000_000)
            .expect("signs");
        verify(
            &jws,
            &signature::RSA_PKCS1_2048_8192_SHA256,
            parsed.public_key().as_ref(),
            "RS256",
        );
        assert_eq!(part(&jws, 0)["kid"], "k1");

        let generated =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("generate");
        let pkcs8 = generated.as_der().expect("pkcs8");
        let key = AssertionKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes(), None)
            .expect("PKCS#8 reads");
        let jws = key
            .assertion("vestibule-jwt", "https://idp.example/token", 1_700_000_000)
            .expect("signs");
        verify(
            &jws,
            &signature::RSA_PKCS1_2048_8192_SHA256,
            generated.public_key().as_ref(),
            "RS256",
        );
        assert!(part(&jws, 0).get("kid").is_none(), "no kid configured");
    }

    #[test]
    fn p256_keys_in_sec1_and_pkcs8_sign_es256_and_every_assertion_has_its_own_jti() {
        let generated =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("generate");
        let sec1 = generated.private_key().as_der().expect("sec1");
        let pkcs8 = generated.to_pkcs8v1().expect("pkcs8");
        let mut jtis = std::collections::HashSet::new();
        for pem in [
            pem("EC PRIVATE KEY", sec1.as_ref()),
            pem("PRIVATE KEY", pkcs8.as_ref()),
        ] {
            let key = AssertionKey::from_pem(pem.as_bytes(), Some("ec".into())).expect("reads");
            assert_eq!(key.alg(), "ES256");
            for _ in 0..2 {
                let jws = key
                    .assertion("vestibule-jwt", "https://idp.example/token", 1_700_000_000)
                    .expect("signs");
                let claims = verify(
                    &jws,
                    &signature::ECDSA_P256_SHA256_FIXED,
                    generated.public_key().as_ref(),
                    "ES256",
                );
                let jti = claims["jti"].as_str().expect("jti").to_owned();
                assert!(jti.len() >= 43, "256 random bits: {jti}");
                assert!(jtis.insert(jti), "a jti is never reused");
            }
        }
    }

    #[test]
    fn other_keys_and_non_keys_are_refused_with_a_reason() {
        let p384 = signature::EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING)
            .expect("generate");
        let sec1 = pem(
            "EC PRIVATE KEY",
            p384.private_key().as_der().expect("der").as_ref(),
        );
        let e = AssertionKey::from_pem(sec1.as_bytes(), None).expect_err("P-384");
        assert!(e.contains("P-256"), "{e}");
        let pkcs8 = pem("PRIVATE KEY", p384.to_pkcs8v1().expect("der").as_ref());
        let e = AssertionKey::from_pem(pkcs8.as_bytes(), None).expect_err("P-384");
        assert!(e.contains("neither RSA nor EC on P-256"), "{e}");
        let ed = signature::Ed25519KeyPair::generate().expect("ed25519");
        let ed = pem("PRIVATE KEY", ed.to_pkcs8().expect("der").as_ref());
        let e = AssertionKey::from_pem(ed.as_bytes(), None).expect_err("Ed25519");
        assert!(e.contains("neither RSA nor EC"), "{e}");
        let public = pem(
            "PUBLIC KEY",
            p384.public_key().as_der().expect("spki").as_ref(),
        );
        let e = AssertionKey::from_pem(public.as_bytes(), None).expect_err("public key");
        assert!(e.contains("no unencrypted private key"), "{e}");
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = AssertionKey::from_pem(encrypted.as_bytes(), None).expect_err("encrypted");
        assert!(e.contains("decrypted first"), "{e}");
        let e = AssertionKey::from_pem(b"not a pem", None).expect_err("garbage");
        assert!(e.contains("no unencrypted private key"), "{e}");
        let e = AssertionKey::from_pem(
            pem("RSA PRIVATE KEY", b"\x30\x03\x02\x01\x00").as_bytes(),
            None,
        )
        .expect_err("broken RSA");
        assert!(e.contains("RSA key that cannot sign"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = AssertionKey::from_pem(RSA_PKCS1.as_bytes(), Some("k1".into())).expect("reads");
        let shown = format!("{key:?}");
        assert!(shown.contains("RS256") && shown.contains("k1"), "{shown}");
        assert!(!shown.contains("MII"), "{shown}");
    }
}
