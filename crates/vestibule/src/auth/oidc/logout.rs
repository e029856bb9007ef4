//! Logging out with the provider, both ways:
//!
//! - **Back-channel** (OpenID Connect Back-Channel Logout 1.0): the provider POSTs a signed
//!   logout token to `/auth/oidc/{provider}/backchannel-logout` when the user logs out there;
//!   the Vestibule sessions made from that provider session (by `sid`), or every session of the
//!   user (by `sub` alone), end through [`crate::session::SessionManager::end`], on every instance.
//! - **RP-initiated** (OpenID Connect RP-Initiated Logout 1.0): the SPA ends its Vestibule
//!   session and is given the provider's `end_session_endpoint` URL with the ID token as
//!   `id_token_hint`, to end the provider's session too.
//!
//! The logout token is a JWT that `openidconnect` has no type for; what is written here is the
//! JWS split and the claim rules of the specification (§2.6). The signature itself is checked by
//! `openidconnect`'s key types (the same JWKS, the same algorithm allow-list as the ID token:
//! never `none`, HMAC with the client secret only when configured).
//!
//! Where the provider's `sid` is kept, and why: the session stores are keyed by the session
//! token's hash, which changes at every rotation, and index sessions only by user. So a login
//! records the `sid` twice: in the session's data (a hash under [`SID_KEY`], moving with the
//! record through rotations), and in the table `oidc_sessions` (issuer, hash of sid → user id,
//! migration 0009) — the only way from a `sid` alone to a user. A back-channel logout finds the
//! users (by `sid` through that table, by `sub` through the identities), lists their live
//! sessions in the store and ends those whose [`SID_KEY`] matches, one by one through the store's
//! revocation (with the cookie store, which cannot end one session, it ends all of the user's).
//! The seen `jti`s are kept in the database too (`oidc_logout_jtis`, until the token's `iat`
//! leaves the accepted window), so a replay is refused by every instance sharing it.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::JsonWebKey;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeyUse, CoreProviderMetadata};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{ProviderSettings, RelyingParty, Verified, err, serde_plain_alg};
use crate::auth::UserError;
use crate::db::{Database, with_pool};
use crate::error::{Error, ErrorCode, Result};
use crate::session::{Ended, Session, SessionManager, now};

/// The session key of the provider login (sealed [`ProviderLogin`]): what RP-initiated logout
/// needs.
pub const LOGIN_KEY: &str = "oidc.login";
/// The session key of the provider session's id: hex SHA-256 of (issuer, `sid`).
pub const SID_KEY: &str = "oidc.sid";
/// The event a logout token must carry.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How old a logout token's `iat` may be (its `jti` is remembered this long, plus the skew).
const MAX_AGE: i64 = 600;
/// How far in the future a logout token's `iat` may be (clock skew).
const SKEW: i64 = 60;

/// The provider login of a session, kept sealed in it for RP-initiated logout.
#[derive(Debug, Serialize, Deserialize)]
struct ProviderLogin {
    provider: String,
    /// The ID token as the provider issued it (`id_token_hint`).
    id_token: String,
}

/// What a verified logout token says.
#[derive(Debug)]
struct LogoutClaims {
    issuer: String,
    subject: Option<String>,
    sid: Option<String>,
    jti: String,
}

fn invalid(message: impl Into<String>) -> Error {
    err(ErrorCode::OidcLogoutTokenInvalid, message)
        .with_hint("the provider must send a signed logout token (OpenID Connect Back-Channel Logout 1.0, section 2.4)")
}

/// The hash a `sid` is kept under (the provider's session id is not a secret of ours, but an
/// index needs no readable copy of it).
fn sid_hash(issuer: &str, sid: &str) -> String {
    let mut h = Sha256::new();
    h.update(issuer.as_bytes());
    h.update([0]);
    h.update(sid.as_bytes());
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The claims of a JWS compact token, unverified (the caller verifies, or did).
fn payload(token: &str) -> Option<Map<String, Value>> {
    let part = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The durable part: provider sessions by `sid`, and the logout tokens seen.
#[derive(Debug, Clone)]
struct LogoutIndex<'a> {
    db: &'a Database,
}

impl LogoutIndex<'_> {
    /// Records that `user_id` logged in through the provider session `sid`; forgets records
    /// older than `keep` (the longest a session lives).
    async fn remember(&self, sid: &str, user_id: i64, keep: Duration) -> Result<(), UserError> {
        let at = now();
        let cutoff = at.saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX / 2));
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM oidc_sessions WHERE created_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO oidc_sessions (sid_hash, user_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(sid)
            .bind(user_id)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The users that logged in through the provider session `sid`.
    async fn users_of_sid(&self, sid: &str) -> Result<Vec<i64>, UserError> {
        Ok(with_pool!(self.db, read, |pool, _d| {
            let rows = sqlx::query("SELECT user_id FROM oidc_sessions WHERE sid_hash = $1")
                .bind(sid)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<Vec<_>, _>>()?
        }))
    }

    /// Spends `jti` of `issuer` until `until`: `false` when it was spent already (a replay).
    /// The primary key makes this one atomic insert for every instance sharing the database.
    async fn spend(&self, issuer: &str, jti: &str, until: i64) -> Result<bool, UserError> {
        Ok(with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM oidc_logout_jtis WHERE expires_at < $1")
                .bind(now())
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO oidc_logout_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(issuer)
            .bind(jti)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    /// Gives `jti` back (ending the sessions failed: the provider may retry).
    async fn unspend(&self, issuer: &str, jti: &str) -> Result<(), UserError> {
        with_pool!(self.db, write, |pool, _d| {
            sqlx::query("DELETE FROM oidc_logout_jtis WHERE issuer = $1 AND jti = $2")
                .bind(issuer)
                .bind(jti)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

impl RelyingParty {
    fn logout_index(&self) -> LogoutIndex<'_> {
        LogoutIndex {
            db: self.0.identities.db(),
        }
    }

    /// After a login through a provider: keeps the ID token (sealed, for RP-initiated logout)
    /// and the provider session's `sid` (for back-channel logout) in the session of `user_id`,
    /// and indexes the `sid`; `keep` is the longest a session lives.
    ///
    /// # Errors
    /// 503 `store_unavailable`.
    pub async fn keep_login(
        &self,
        session: &Session,
        user_id: i64,
        v: &Verified,
        keep: Duration,
    ) -> Result<()> {
        let login = ProviderLogin {
            provider: v.provider.clone(),
            id_token: v.id_token.clone(),
        };
        let json = serde_json::to_vec(&login).map_err(Error::internal)?;
        session
            .insert(LOGIN_KEY, self.0.secrets.seal(user_id, &json)?)
            .await?;
        // The ID token verified already: its `sid` is read, not checked again.
        let sid = payload(&v.id_token)
            .and_then(|c| c.get("sid").and_then(Value::as_str).map(str::to_owned));
        if let Some(sid) = sid {
            let hash = sid_hash(&v.issuer, &sid);
            session.insert(SID_KEY, &hash).await?;
            self.logout_index()
                .remember(&hash, user_id, keep)
                .await
                .map_err(Error::from)?;
        }
        Ok(())
    }

    /// Verifies a logout token sent by `provider` (Back-Channel Logout 1.0, §2.6): a JWS (never
    /// `alg: none`, only the configured algorithms) signed by a key of the provider's JWKS
    /// (fetched again once for an unknown `kid`), `iss` the provider's, `aud` our client id,
    /// `iat` within the window, the logout event, no `nonce`, a `sid` or a `sub`, a `jti`.
    async fn verify_logout_token(&self, p: &ProviderSettings, token: &str) -> Result<LogoutClaims> {
        let parts: Vec<&str> = token.split('.').collect();
        let &[h64, c64, s64] = parts.as_slice() else {
            return Err(invalid(
                "the logout token is not a signed JWT (three dot-separated parts; encrypted tokens are not accepted)",
            ));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| invalid(format!("the logout token's {what} is not base64url")))
        };
        let header: Map<String, Value> = serde_json::from_slice(&decode(h64, "header")?)
            .map_err(|_| invalid("the logout token's header is not a JSON object"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&decode(c64, "payload")?)
            .map_err(|_| invalid("the logout token's payload is not a JSON object"))?;
        let signature = decode(s64, "signature")?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        if alg_name.eq_ignore_ascii_case("none") || !p.id_token_algs.iter().any(|a| a == alg_name) {
            return Err(invalid(format!(
                "the logout token's algorithm {alg_name:?} is not accepted (the provider's id_token_algs; never none)"
            )));
        }
        if let Some(typ) = header.get("typ").and_then(Value::as_str) {
            let t = typ.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if t != "logout+jwt" && t != "jwt" {
                return Err(invalid(format!(
                    "the token's type {typ:?} is not a logout token's"
                )));
            }
        }
        let alg = serde_plain_alg(alg_name).ok_or_else(|| invalid("unknown algorithm"))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let message = format!("{h64}.{c64}");
        let mut m = self.metadata(p, false).await?;
        if alg_name.starts_with("HS") {
            // HMAC: the client secret is the key (only when the operator listed the algorithm).
            // Never an empty key: without a secret (private_key_jwt) no HMAC token verifies
            // (the configuration refuses HS* without client_secret too).
            let secret = p
                .client_secret
                .as_ref()
                .map(|s| s.0.clone())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid("an HMAC-signed logout token, and no client secret"))?;
            CoreJsonWebKey::new_symmetric(secret.into_bytes())
                .verify_signature(&alg, message.as_bytes(), &signature)
                .map_err(|_| invalid("the logout token's signature does not verify"))?;
        } else {
            let matching = |m: &CoreProviderMetadata| -> Vec<CoreJsonWebKey> {
                m.jwks()
                    .keys()
                    .iter()
                    .filter(|k| kid.is_none_or(|kid| k.key_id().is_some_and(|i| **i == kid)))
                    .filter(|k| {
                        k.key_use()
                            .is_none_or(|u| matches!(u, CoreJsonWebKeyUse::Signature))
                    })
                    .cloned()
                    .collect()
            };
            let mut keys = matching(&m);
            if keys.is_empty() {
                // A key the cached set lacks: the provider rotated its keys. Fetch once more.
                m = self.metadata(p, true).await?;
                keys = matching(&m);
            }
            if keys.is_empty() {
                return Err(invalid(
                    "no key of the provider's JWKS matches the logout token's kid",
                ));
            }
            if !keys.iter().any(|k| {
                k.verify_signature(&alg, message.as_bytes(), &signature)
                    .is_ok()
            }) {
                return Err(invalid("the logout token's signature does not verify"));
            }
        }
        let issuer = m.issuer().as_str();
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(invalid(
                "the logout token's iss is not the provider's issuer",
            ));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == p.client_id,
            Some(Value::Array(a)) => a.iter().any(|a| a.as_str() == Some(p.client_id.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid("the logout token's aud does not name this client"));
        }
        let at = now();
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("the logout token has no iat"))?;
        if iat < at - MAX_AGE || iat > at + SKEW {
            return Err(invalid(format!(
                "the logout token's iat is outside the accepted window ({MAX_AGE} s old to {SKEW} s ahead)"
            )));
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
            && exp + SKEW < at
        {
            return Err(invalid("the logout token has expired"));
        }
        let event_ok = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(invalid(format!(
                "the logout token's events do not hold {LOGOUT_EVENT}"
            )));
        }
        if claims.contains_key("nonce") {
            return Err(invalid(
                "the token holds a nonce: it is an ID token, not a logout token",
            ));
        }
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_owned)
        };
        let (subject, sid) = (text("sub"), text("sid"));
        if subject.is_none() && sid.is_none() {
            return Err(invalid("the logout token has neither sid nor sub"));
        }
        let jti = text("jti").ok_or_else(|| invalid("the logout token has no jti"))?;
        Ok(LogoutClaims {
            issuer: issuer.to_owned(),
            subject,
            sid,
            jti,
        })
    }

    /// A back-channel logout from `provider`: verifies `token`, refuses a replayed `jti`, and
    /// ends the sessions it names — by `sid`, the sessions made from that provider session; by
    /// `sub` alone, every session of the users linked to (issuer, `sub`). Sessions end through
    /// [`SessionManager::end`], the one revocation path (so on every instance sharing the
    /// store, and the provider tokens they kept are revoked).
    ///
    /// # Errors
    /// 404 `oidc_provider_unknown`, 400 `oidc_logout_token_invalid` (including a replay), 503
    /// `oidc_provider_unavailable` (no keys), 503 `store_unavailable`.
    pub async fn back_channel_logout(
        &self,
        sessions: &SessionManager,
        provider: &str,
        token: &str,
    ) -> Result<Ended> {
        let p = self.provider(provider)?;
        let claims = match self.verify_logout_token(p, token).await {
            Ok(c) => c,
            Err(e) => {
                audit!("oidc.backchannel_refused", provider = %p.name, "back-channel logout token refused");
                tracing::info!(provider = %p.name, error = %e, "logout token refused");
                return Err(e);
            }
        };
        let index = self.logout_index();
        let until = now().saturating_add(MAX_AGE + 2 * SKEW);
        if !index
            .spend(&claims.issuer, &claims.jti, until)
            .await
            .map_err(Error::from)?
        {
            audit!("oidc.backchannel_refused", provider = %p.name, reason = "replay", "back-channel logout token replayed");
            return Err(invalid("this logout token (its jti) was received before"));
        }
        let by = if claims.sid.is_some() { "sid" } else { "sub" };
        match self.end_named_sessions(sessions, &claims).await {
            Ok(ended) => {
                audit!("oidc.backchannel_logout", provider = %p.name, by, ended = %ended, "sessions ended by the provider");
                Ok(ended)
            }
            Err(e) => {
                let _ = index.unspend(&claims.issuer, &claims.jti).await;
                Err(e)
            }
        }
    }

    async fn end_named_sessions(
        &self,
        sessions: &SessionManager,
        c: &LogoutClaims,
    ) -> Result<Ended> {
        let mut users = match &c.subject {
            Some(sub) => self
                .0
                .identities
                .users_of(&c.issuer, sub)
                .await
                .map_err(Error::from)?,
            None => Vec::new(),
        };
        let Some(sid) = &c.sid else {
            // By `sub` alone: every session of the user.
            return sessions.end_all(users).await;
        };
        let hash = sid_hash(&c.issuer, sid);
        let by_sid = self
            .logout_index()
            .users_of_sid(&hash)
            .await
            .map_err(Error::from)?;
        if c.subject.is_some() {
            // Both named: the sessions of that provider session that are also the subject's.
            users.retain(|u| by_sid.contains(u));
        } else {
            users = by_sid;
        }
        users.sort_unstable();
        users.dedup();
        let mut total = Ended::Deleted(0);
        for user_id in users {
            if sessions.is_stateless() {
                // The cookie store cannot end one session: all of the user's end.
                total = total.and(sessions.end_all([user_id]).await?);
                continue;
            }
            let records = sessions
                .store()
                .list_user(user_id)
                .await
                .map_err(Error::from)?;
            for r in records
                .iter()
                .filter(|r| r.data.get(SID_KEY).and_then(Value::as_str) == Some(hash.as_str()))
            {
                match sessions.end_record(r).await {
                    Ok(e) => total = total.and(e),
                    Err(e) if e.code() == ErrorCode::SessionExpired => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(total)
    }

    /// The provider's logout URL for the session of `user_id` (RP-Initiated Logout 1.0): its
    /// `end_session_endpoint` with `id_token_hint`, `client_id` and, when `return_to` is given
    /// (checked like a login's: this origin or an allowed SPA origin; the provider must also
    /// have it registered), `post_logout_redirect_uri`. `None`: the session did not log in
    /// through a provider, or the provider has no `end_session_endpoint`.
    ///
    /// # Errors
    /// 400 `oidc_return_to_refused`, 503 `oidc_provider_unavailable`, 503 `store_unavailable`.
    pub async fn end_session_url(
        &self,
        session: &Session,
        user_id: i64,
        return_to: Option<&str>,
    ) -> Result<Option<String>> {
        let return_to = return_to
            .map(|r| self.check_return_to(Some(r)))
            .transpose()?;
        let Some(sealed) = session.get::<String>(LOGIN_KEY).await? else {
            return Ok(None);
        };
        let login: ProviderLogin = serde_json::from_slice(&self.0.secrets.open(user_id, &sealed)?)
            .map_err(Error::internal)?;
        let Ok(p) = self.provider(&login.provider) else {
            return Ok(None);
        };
        let Some(endpoint) = self.discovered_endpoint(p, "end_session_endpoint").await? else {
            return Ok(None);
        };
        let mut url = endpoint;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("id_token_hint", &login.id_token);
            q.append_pair("client_id", &p.client_id);
            if let Some(to) = &return_to {
                q.append_pair("post_logout_redirect_uri", to);
            }
        }
        Ok(Some(url.to_string()))
    }

    /// An endpoint of the provider's discovery document that `openidconnect`'s core metadata
    /// type drops (`end_session_endpoint`, `revocation_endpoint`): `None` when the document
    /// has no http(s) URL there. Read here, not from the cached metadata; a logout is rare
    /// enough for one request to the provider.
    pub(super) async fn discovered_endpoint(
        &self,
        p: &ProviderSettings,
        field: &str,
    ) -> Result<Option<url::Url>> {
        let unavailable = |e: reqwest::Error| {
            err(
                ErrorCode::OidcProviderUnavailable,
                "the OpenID provider did not answer its discovery document",
            )
            .with_source(e)
            .with_retry_after(5)
        };
        let doc: Map<String, Value> = self
            .0
            .http
            .reqwest()
            .get(format!(
                "{}/.well-known/openid-configuration",
                p.issuer.trim_end_matches('/')
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        if doc.get("issuer").and_then(Value::as_str) != Some(p.issuer.as_str()) {
            return Err(err(
                ErrorCode::OidcProviderUnavailable,
                "the provider's discovery document names another issuer",
            ));
        }
        Ok(doc
            .get(field)
            .and_then(Value::as_str)
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| matches!(u.scheme(), "https" | "http")))
    }
}

#[cfg(test)]
mod tests {
    use super::{payload, sid_hash};

    #[test]
    fn sid_hashes_separate_issuers_and_payloads_decode() {
        assert_ne!(sid_hash("https://a", "bc"), sid_hash("https://ab", "c"));
        assert_eq!(sid_hash("i", "s").len(), 64);
        // {"sid":"x"}
        let p = payload("e30.eyJzaWQiOiJ4In0.").expect("payload");
        assert_eq!(p.get("sid").and_then(|v| v.as_str()), Some("x"));
        assert!(payload("not a jwt").is_none());
    }
}
