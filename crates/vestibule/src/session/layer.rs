//! The tower middleware that gives every request a [`Session`] and saves it afterwards.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::{Credential, Session, SessionManager};
use crate::error::{Error, ErrorCode};
use crate::token::{SecretToken, TokenKind};

/// A request carrying `X-Vestibule-No-Touch: 1` does not extend its session's expiry: for
/// pollers (a dashboard left open should not keep a session alive for ever).
pub const NO_TOUCH_HEADER: &str = "x-vestibule-no-touch";
/// [`NO_TOUCH_HEADER`] as a header name: a lookup by `&str` parses and lower-cases the name on
/// every request (≈ 400 instructions, callgrind `me`), a `HeaderName` is hashed directly.
const NO_TOUCH: HeaderName = HeaderName::from_static(NO_TOUCH_HEADER);

/// Adds a [`Session`] to every request's extensions and, when the handler has answered, saves
/// what it changed and sets or clears the cookie.
///
/// A malformed, unknown, expired or tampered cookie is simply "no session". A 5xx answer saves
/// nothing. When the session was deleted while the request ran (logout elsewhere), the answer is
/// 401 `session_expired` and the cookie is cleared: a deleted session is never resurrected.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer backed by `manager`.
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = SessionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let credential =
            match credential_from_headers(req.headers(), &self.manager.config.cookie.name) {
                Ok(c) => c,
                Err(err) => {
                    return SessionFuture {
                        state: FutureState::Done {
                            res: Some(err.into_response()),
                        },
                        session: None,
                    };
                }
            };
        // The cookie backend: the cookie holds a sealed session, not a token.
        let credential = match (&self.manager.sealed, credential) {
            (Some(_), Credential::None { had_cookie: true }) => {
                let values =
                    sealed_values_from_headers(req.headers(), &self.manager.config.cookie.name);
                if values.is_empty() {
                    Credential::None { had_cookie: true }
                } else {
                    Credential::Sealed(values)
                }
            }
            (_, c) => c,
        };
        // Kept as the header value (a cheap clone); turned into text only if a session is created.
        let user_agent = req.headers().get(header::USER_AGENT).cloned();
        let no_touch = req
            .headers()
            .get(&NO_TOUCH)
            .is_some_and(|v| v.as_bytes() == b"1");
        // A write, as far as an access token's scope goes: anything but GET, HEAD and OPTIONS
        // (`is_read_method`, the one rule; `Method::is_safe` would also let TRACE through).
        let unsafe_method = !super::is_read_method(req.method());
        // Only anonymous requests need the address (for their session-creation limit).
        let client_ip = match (&self.manager.anonymous_limit, &credential) {
            (Some(limit), Credential::None { .. } | Credential::Sealed(_)) => {
                Some(limit.proxies.rate_key(req.extensions(), req.headers()))
            }
            _ => None,
        };
        let session = Session::new(
            self.manager.clone(),
            credential,
            user_agent,
            no_touch,
            unsafe_method,
            client_ip,
        );
        req.extensions_mut().insert(session.clone());
        SessionFuture {
            state: FutureState::Inner {
                fut: self.inner.call(req),
            },
            session: Some(session),
        }
    }
}

type CommitFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    #[project = FutureStateProj]
    enum FutureState<F> {
        Inner { #[pin] fut: F },
        Commit { fut: CommitFuture },
        Done { res: Option<Response> },
    }
}

pin_project! {
    /// Runs the handler, then commits the session. The commit is boxed only when there is
    /// something to write: a request that just read its session returns without another allocation.
    pub struct SessionFuture<F> {
        #[pin]
        state: FutureState<F>,
        session: Option<Session>,
    }
}

impl<F> Future for SessionFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                FutureStateProj::Inner { fut } => {
                    let Ok(res) = ready!(fut.poll(cx));
                    let save = !res.status().is_server_error();
                    let Some(session) = this.session.take() else {
                        return Poll::Ready(Ok(res));
                    };
                    if !session.needs_commit(save) {
                        return Poll::Ready(Ok(res));
                    }
                    this.state.set(FutureState::Commit {
                        fut: Box::pin(commit(session, res, save)),
                    });
                }
                FutureStateProj::Commit { fut } => return fut.as_mut().poll(cx).map(Ok),
                FutureStateProj::Done { res } => {
                    let res = res.take().unwrap_or_else(|| {
                        Error::new(
                            ErrorCode::Internal,
                            "session future polled after completion",
                        )
                        .into_response()
                    });
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}

async fn commit(session: Session, mut res: Response, save: bool) -> Response {
    match session.commit(save).await {
        Ok(Some(cookie)) => append_cookie(&mut res, &cookie),
        Ok(None) => {}
        Err(err) => {
            // The answer the handler gave cannot stand: its session write did not happen.
            // A session too large for its cookie keeps the cookie it came with: that one still
            // holds the session as it was before the refused write.
            let keep_cookie = err.code() == ErrorCode::SessionTooLarge;
            let mut replaced = err.into_response();
            if session.had_cookie() && !keep_cookie {
                append_cookie(&mut replaced, &session.manager().config.cookie.removal());
            }
            res = replaced;
        }
    }
    res
}

fn append_cookie(res: &mut Response, cookie: &cookie::Cookie<'static>) {
    match HeaderValue::from_str(&cookie.encoded().to_string()) {
        Ok(v) => {
            res.headers_mut().append(header::SET_COOKIE, v);
            // A response that sets a session cookie must never be stored by a shared cache.
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Err(e) => tracing::error!(error = %e, "session cookie is not a valid header value"),
    }
}

/// Longest `Authorization` value considered; anything longer is refused unread.
const MAX_AUTHORIZATION: usize = 512;

/// The request's credential. An `Authorization` header, when present, is the only credential
/// considered (no fallback to the cookie), and a malformed one is refused with 401
/// `invalid_token`. Without it, the session cookie is used; a malformed cookie is "no session".
pub(crate) fn credential_from_headers(
    headers: &HeaderMap,
    cookie_name: &str,
) -> Result<Credential, Error> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = auth.next() else {
        let (mut tokens, had_cookie) = session_token_from_headers(headers, cookie_name);
        return Ok(if tokens.is_empty() {
            Credential::None { had_cookie }
        } else {
            let first = tokens.remove(0);
            Credential::Cookie(first, tokens)
        });
    };
    let bad = |why: &str| Error::invalid_token(format!("malformed Authorization header: {why}"));
    if auth.next().is_some() {
        return Err(bad("more than one Authorization header"));
    }
    if value.len() > MAX_AUTHORIZATION {
        return Err(bad("too long"));
    }
    let text = value.to_str().map_err(|_| bad("not ASCII"))?;
    let Some((scheme, token)) = text.split_once(' ') else {
        return Err(bad("expected \"Bearer <token>\""));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad("the scheme must be Bearer"));
    }
    // A byte scan: `str::contains` with a char set decodes every char, ≈ 500 instructions per
    // bearer request for a 53-byte token (callgrind, bench/profile.sh `bearer`).
    if token.is_empty() || token.bytes().any(|b| b == b' ' || b == b'\t') {
        return Err(bad("expected exactly one space and then the token"));
    }
    let kind = if token.starts_with(TokenKind::AccessToken.prefix()) {
        TokenKind::AccessToken
    } else {
        TokenKind::Session
    };
    let secret = SecretToken::parse(kind, token).map_err(|e| bad(&e.to_string()))?;
    Ok(match kind {
        TokenKind::AccessToken => Credential::AccessToken(secret),
        _ => Credential::Bearer(secret),
    })
}

/// Most session cookies of one name considered on one request: each well-formed one may cost a
/// store read. A browser holds one; two mean a stale `Domain`/`Path` variant or cookie tossing.
pub(crate) const MAX_SESSION_COOKIES: usize = 4;

/// Finds the session cookies among all `Cookie` headers: every value that parses as a session
/// token, in the order sent (at most [`MAX_SESSION_COOKIES`]), and whether any cookie of that
/// name was present at all. Anything malformed (non-UTF-8, bad token, wrong checksum) is
/// skipped, never an error. Which one is used is decided when the session loads: the one that
/// opens a live session, not merely the first (see `Session::loaded`).
pub(crate) fn session_token_from_headers(
    headers: &HeaderMap,
    name: &str,
) -> (Vec<SecretToken>, bool) {
    // One pass over the pairs (this runs on every request): presence and the tokens together.
    let mut seen = false;
    let mut tokens = Vec::new();
    for (n, v) in crate::cookie_header::raw_pairs(headers) {
        if n != name.as_bytes() {
            continue;
        }
        seen = true;
        if tokens.len() < MAX_SESSION_COOKIES
            && let Ok(v) = std::str::from_utf8(v)
            && let Ok(t) = SecretToken::parse(TokenKind::Session, v)
        {
            tokens.push(t);
        }
    }
    (tokens, seen)
}

/// The sealed sessions (`v1.…`) among the cookies named `name`, in the order sent (at most
/// [`MAX_SESSION_COOKIES`]), for the cookie backend. Their authenticity is checked when they are
/// opened; here only the shape and the size bound.
pub(crate) fn sealed_values_from_headers(headers: &HeaderMap, name: &str) -> Vec<String> {
    crate::cookie_header::values(headers, name)
        .filter(|v| v.starts_with("v1.") && v.len() <= super::stores::MAX_COOKIE_VALUE)
        .take(MAX_SESSION_COOKIES)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cookie_header::test_headers as headers;

    #[test]
    fn finds_the_token_among_other_cookies_and_headers() {
        let t = SecretToken::generate(TokenKind::Session);
        let h = headers(&[
            b"a=1; b=2",
            format!("x=y; sid={}; z=1", t.expose()).as_bytes(),
        ]);
        let (found, seen) = session_token_from_headers(&h, "sid");
        assert!(seen);
        assert_eq!(
            found.iter().map(SecretToken::hash).collect::<Vec<_>>(),
            vec![t.hash()]
        );
    }

    #[test]
    fn garbage_is_no_session_but_is_noticed() {
        let h = headers(&[b"sid=garbage; other=1", b"\xff\xfe=\x80"]);
        let (found, seen) = session_token_from_headers(&h, "sid");
        assert!(found.is_empty());
        assert!(seen);
        let (found, seen) = session_token_from_headers(&HeaderMap::new(), "sid");
        assert!(found.is_empty() && !seen);
    }

    #[test]
    fn every_well_formed_session_cookie_is_a_candidate_in_order_up_to_the_cap() {
        let ts: Vec<SecretToken> = (0..6)
            .map(|_| SecretToken::generate(TokenKind::Session))
            .collect();
        let line = ts
            .iter()
            .map(|t| format!("sid={}", t.expose()))
            .collect::<Vec<_>>()
            .join("; ");
        let h = headers(&[format!("sid=garbage; {line}").as_bytes()]);
        let (found, _) = session_token_from_headers(&h, "sid");
        assert_eq!(
            found.iter().map(SecretToken::hash).collect::<Vec<_>>(),
            ts.iter()
                .take(MAX_SESSION_COOKIES)
                .map(SecretToken::hash)
                .collect::<Vec<_>>()
        );
    }
}
