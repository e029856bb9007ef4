//! Verifies the gateway's `X-Vestibule-Assertion`: a 60-second EdDSA (Ed25519) JWT naming the
//! user, signed with a key whose public half the gateway serves at `/auth/jwks.json`.
//!
//! Needed only when this backend can be reached by other paths than the gateway (then anyone on
//! that path could send `X-Vestibule-User-Id` themselves). Checks: `alg` is EdDSA, the `kid` is
//! in the key set, the signature (strict), `exp`/`iat` with 5 s of clock skew, `aud` is this
//! backend's URL as the gateway's `[[upstream]] url` names it, and `iss` when configured.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Tolerated clock difference between the gateway and this backend.
const SKEW_SECS: i64 = 5;
/// An unknown `kid` refetches the key set at most this often (a forged `kid` must not make
/// every request call the gateway).
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// Upper bound for the key-set request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The claims this backend uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user id, as a string.
    pub sub: String,
    /// The username.
    pub preferred_username: String,
    /// The gateway's public URL.
    pub iss: String,
    /// The upstream URL the assertion was made for.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    kid: String,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Default)]
struct Keys {
    by_kid: HashMap<String, VerifyingKey>,
    fetched: Option<Instant>,
}

/// Checks assertions against the gateway's published keys (fetched on first use, refetched when
/// an unknown key id shows up: the gateway's key may have been replaced).
#[derive(Debug)]
pub struct Verifier {
    jwks_url: String,
    audience: String,
    issuer: Option<String>,
    http: reqwest::Client,
    keys: Mutex<Keys>,
}

impl Verifier {
    /// A verifier for assertions made for `audience` (this backend's URL as the gateway's
    /// `[[upstream]] url` names it), with keys from `jwks_url`, and from `issuer` only if given.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(jwks_url: String, audience: String, issuer: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            jwks_url,
            audience,
            issuer,
            http: reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?,
            keys: Mutex::new(Keys::default()),
        })
    }

    async fn key(&self, kid: &str) -> Result<VerifyingKey, String> {
        let mut keys = self.keys.lock().await;
        if let Some(k) = keys.by_kid.get(kid) {
            return Ok(*k);
        }
        if keys.fetched.is_some_and(|t| t.elapsed() < REFETCH_AFTER) {
            return Err(format!("unknown key id {kid:?}"));
        }
        keys.fetched = Some(Instant::now());
        let set: Jwks = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot fetch {}: {e}", self.jwks_url))?
            .json()
            .await
            .map_err(|e| format!("{} is not a JWK set: {e}", self.jwks_url))?;
        keys.by_kid = set
            .keys
            .into_iter()
            .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
            .filter_map(|k| {
                let raw: [u8; 32] = URL_SAFE_NO_PAD.decode(&k.x).ok()?.try_into().ok()?;
                Some((k.kid, VerifyingKey::from_bytes(&raw).ok()?))
            })
            .collect();
        keys.by_kid
            .get(kid)
            .copied()
            .ok_or_else(|| format!("unknown key id {kid:?}"))
    }

    /// The claims of `jwt` if it is a valid, current assertion for this backend.
    ///
    /// # Errors
    /// Why it is not (for the log and the 401's message; it names no secret).
    pub async fn verify(&self, jwt: &str) -> Result<Claims, String> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a compact JWT".into());
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| "bad base64url".to_owned())
        };
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| "bad JWT header".to_owned())?;
        if header.alg != "EdDSA" {
            return Err(format!("alg {:?} is not EdDSA", header.alg));
        }
        let signature =
            Signature::from_slice(&decode(s)?).map_err(|_| "bad signature length".to_owned())?;
        let key = self.key(&header.kid).await?;
        key.verify_strict(format!("{h}.{c}").as_bytes(), &signature)
            .map_err(|_| "bad signature".to_owned())?;
        let claims: Claims =
            serde_json::from_slice(&decode(c)?).map_err(|_| "bad JWT claims".to_owned())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if claims.exp + SKEW_SECS < now {
            return Err("expired".into());
        }
        if claims.iat - SKEW_SECS > now {
            return Err("issued in the future".into());
        }
        if claims.aud != self.audience {
            return Err(format!(
                "made for {:?}, not this backend ({:?})",
                claims.aud, self.audience
            ));
        }
        if let Some(iss) = &self.issuer
            && &claims.iss != iss
        {
            return Err(format!("issued by {:?}, not {iss:?}", claims.iss));
        }
        Ok(claims)
    }
}
