//! CSRF protection for cookie-authenticated writes, closing the holes DRF leaves open.
//!
//! Every unsafe request (POST, PUT, PATCH, DELETE, …) that a browser could send with the session
//! cookie must pass two checks:
//! 1. **Origin**: `Sec-Fetch-Site: same-origin`, or an `Origin` (else `Referer`) equal to this
//!    server's origin or a trusted origin. A request with none of the three headers is not from a
//!    browser (curl, a script) and passes this check.
//! 2. **Token**: when the request carries a live session, `X-CSRF-Token` must hold that session's
//!    token. The token is derived from the session token (so it rotates with it at login) and is
//!    masked afresh in every response (BREACH), then compared in constant time.
//!
//! Login and signup are covered too (no login-CSRF): a request with no session needs no token but
//! must still pass the origin check.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method, Request, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::Either;
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use crate::error::{Error, ErrorCode};
use crate::origin::Origin;
use crate::origins::OriginsPolicy;
use crate::session::{Session, Transport};
use crate::token::fill_fast_random;

/// The request header that carries the token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// [`CSRF_HEADER`] as a header name, looked up without parsing the name each time.
const CSRF: HeaderName = HeaderName::from_static(CSRF_HEADER);

const SECRET_DOMAIN: &[u8] = b"vestibule/csrf/v1\0";

/// The unmasked CSRF secret of the request's cookie session (`None`: no cookie session).
async fn session_secret(session: &Session) -> Result<Option<[u8; 32]>, Error> {
    session.derived_secret(SECRET_DOMAIN).await
}

/// A CSRF token for the session, masked afresh on every call (so compression side channels such
/// as BREACH learn nothing), or `None` when there is no cookie session (then none is needed).
///
/// # Errors
/// `store_unavailable`.
pub async fn session_token(session: &Session) -> Result<Option<String>, Error> {
    Ok(session_secret(session).await?.map(|s| mask(&s)))
}

/// `base64url(mask ‖ secret ⊕ mask)` with a fresh random mask.
pub(crate) fn mask(secret: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    let (m, x) = out.split_at_mut(32);
    fill_fast_random(m);
    for i in 0..32 {
        x[i] = secret[i] ^ m[i];
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// Whether a masked token from a client unmasks to `secret`, compared in constant time.
fn verify(masked: &str, secret: &[u8; 32]) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(masked.trim()) else {
        return false;
    };
    if raw.len() != 64 {
        return false;
    }
    let mut unmasked = [0u8; 32];
    for i in 0..32 {
        unmasked[i] = raw[i] ^ raw[32 + i];
    }
    bool::from(unmasked.ct_eq(secret))
}

/// The origin check alone: `Sec-Fetch-Site: same-origin` passes; else the `Origin` (or, without
/// it, the `Referer`) must be one the policy trusts ([`OriginsPolicy::is_csrf_trusted`], with the
/// request's `Host`); a request with none of the three headers is not from a browser and passes.
///
/// # Errors
/// 403 `csrf_origin_untrusted`, with the origin seen and the config key that would allow it.
pub fn check_origin(policy: &OriginsPolicy, headers: &HeaderMap) -> Result<(), Error> {
    const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
    let site = headers.get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok());
    if site == Some("same-origin") {
        return Ok(());
    }
    let claimed = headers
        .get(header::ORIGIN)
        .map(|v| (v, "Origin"))
        .or_else(|| headers.get(header::REFERER).map(|v| (v, "Referer")));
    let Some((value, which)) = claimed else {
        if site.is_some() {
            return Err(untrusted(
                "a browser request (Sec-Fetch-Site) without Origin or Referer",
            ));
        }
        // No Origin, Referer or Sec-Fetch-Site: not a browser, so not a CSRF vector.
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match Origin::parse_prefix(text) {
        Ok(origin) if policy.is_csrf_trusted(&origin, host) => Ok(()),
        Ok(origin) => Err(untrusted(&format!("{which} {origin}"))),
        Err(_) => Err(untrusted(&format!("{which} {text:?}"))),
    }
}

fn untrusted(what: &str) -> Error {
    Error::new(ErrorCode::CsrfOriginUntrusted, format!("cross-origin write refused: {what} is not trusted"))
        .with_hint("add the SPA's origin to spa_origins (VESTIBULE_SPA_ORIGINS), or to csrf.trusted_origins (VESTIBULE_CSRF__TRUSTED_ORIGINS) for writes only, or serve the SPA from the same origin")
}

/// Runs both checks on a request. Safe methods pass untouched.
///
/// # Errors
/// 403 `csrf_origin_untrusted`, `csrf_token_missing` or `csrf_token_mismatch`; 503 when the
/// session store is down.
pub async fn check(
    policy: &OriginsPolicy,
    method: &Method,
    headers: &HeaderMap,
    session: &Session,
) -> Result<(), Error> {
    // A bearer or access token in Authorization is not an ambient credential: no CSRF vector.
    if is_safe(method) || session.transport() != Transport::Cookie {
        return Ok(());
    }
    check_origin(policy, headers)?;
    let Some(secret) = session_secret(session).await? else {
        return Ok(());
    };
    let Some(sent) = headers.get(&CSRF) else {
        return Err(Error::new(ErrorCode::CsrfTokenMissing, "this request uses the session cookie but has no X-CSRF-Token header")
            .with_hint("send the csrf_token from the login, /auth/me or /auth/csrf response as the X-CSRF-Token header"));
    };
    if verify(sent.to_str().unwrap_or(""), &secret) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::CsrfTokenMismatch,
            "the X-CSRF-Token does not belong to this session",
        )
        .with_hint("fetch a fresh token from GET /auth/csrf; tokens change at login"))
    }
}

/// Tower layer enforcing [`check`] on everything it wraps. Place it inside
/// [`SessionLayer`](crate::session::SessionLayer).
#[derive(Debug, Clone)]
pub struct CsrfLayer {
    policy: Arc<OriginsPolicy>,
}

impl CsrfLayer {
    /// A layer trusting what `policy` trusts (the server's shared origins policy).
    pub fn new(policy: Arc<OriginsPolicy>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Debug, Clone)]
pub struct CsrfService<S> {
    inner: S,
    policy: Arc<OriginsPolicy>,
}

impl<S, B> Service<Request<B>> for CsrfService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<S::Future, Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Safe methods go straight through: no check, no boxed future.
        if is_safe(req.method()) {
            return Either::Left(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Either::Right(Box::pin(async move {
            let Some(session) = req.extensions().get::<Session>().cloned() else {
                return Ok(
                    Error::new(ErrorCode::Internal, "CSRF check without a session")
                        .with_hint("install SessionLayer outside CsrfLayer")
                        .into_response(),
                );
            };
            match check(&policy, req.method(), req.headers(), &session).await {
                Ok(()) => inner.call(req).await,
                Err(e) => {
                    audit!("csrf.refused", code = ?e.code(), method = %req.method(), path = %req.uri().path());
                    Ok(e.into_response())
                }
            }
        }))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// A fresh masked CSRF token for the current session, for handlers that return one.
/// `None` when there is no session (then none is needed).
#[derive(Debug, Clone)]
pub struct CsrfToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        Ok(CsrfToken(session_token(&session).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{SecretToken, TokenKind};
    use axum::http::HeaderValue;

    /// The unmasked secret of a session token, as `session_secret` derives it.
    fn secret_for(token: &SecretToken) -> [u8; 32] {
        token.derive(SECRET_DOMAIN)
    }

    #[test]
    fn masked_tokens_differ_each_time_but_verify() {
        let t = SecretToken::generate(TokenKind::Session);
        let s = secret_for(&t);
        let a = mask(&s);
        let b = mask(&s);
        assert_ne!(a, b);
        assert!(verify(&a, &s) && verify(&b, &s));
        let other = secret_for(&SecretToken::generate(TokenKind::Session));
        assert!(!verify(&a, &other));
        assert!(!verify("not base64 !!", &s));
        assert!(!verify(&a[..40], &s));
    }

    fn cfg() -> OriginsPolicy {
        use crate::origins::{CookieOverrides, OriginPattern};
        let (policy, _) = OriginsPolicy::new(
            Origin::parse("https://api.acme.com").expect("origin"),
            vec![],
            vec![
                OriginPattern::parse("http://localhost:3000").expect("pattern"),
                OriginPattern::parse("https://*.preview.acme.com").expect("pattern"),
            ],
            CookieOverrides::default(),
        )
        .expect("valid policy");
        policy
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn origin_check_cases() {
        let p = cfg();
        let ok = |h: HeaderMap| check_origin(&p, &h).is_ok();
        assert!(ok(headers(&[])), "non-browser client");
        assert!(ok(headers(&[("sec-fetch-site", "same-origin")])));
        assert!(ok(headers(&[("origin", "http://localhost:3000")])));
        assert!(ok(headers(&[("origin", "https://api.acme.com")])));
        assert!(
            ok(headers(&[
                ("origin", "https://127.0.0.1:9000"),
                ("host", "127.0.0.1:9000")
            ])),
            "same origin by Host"
        );
        assert!(ok(headers(&[(
            "referer",
            "http://localhost:3000/page?x=1"
        )])));
        assert!(
            ok(headers(&[("origin", "https://pr-7.preview.acme.com")])),
            "patterns are trusted"
        );
        for bad in [
            headers(&[("origin", "https://preview.acme.com")]),
            headers(&[("origin", "http://pr-7.preview.acme.com")]),
            headers(&[("origin", "https://pr-7.preview.acme.com.evil.test")]),
            headers(&[("origin", "http://evil.test")]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "http://localhost:3001")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.test"),
            ]),
            headers(&[("referer", "http://evil.test/x")]),
            headers(&[("origin", "https://localhost:3000")]),
            // Same host, another scheme than the server's: not same origin.
            headers(&[
                ("origin", "http://127.0.0.1:9000"),
                ("host", "127.0.0.1:9000"),
            ]),
            // A Host naming another origin than the page's.
            headers(&[("origin", "https://evil.test"), ("host", "api.acme.com")]),
        ] {
            let err = check_origin(&p, &bad).expect_err("must be refused");
            assert_eq!(err.code(), ErrorCode::CsrfOriginUntrusted, "{bad:?}");
        }
    }
}
