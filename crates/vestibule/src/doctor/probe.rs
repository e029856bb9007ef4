//! The doctor's HTTP client: sends what Chromium would send for a SPA's call, and records the
//! answers as an [`Exchange`] for the rules.
//!
//! 1. the preflight, when the call needs one (`OPTIONS` with `Origin`,
//!    `Access-Control-Request-Method` and `-Headers`, never a cookie — rule 3);
//! 2. the real request with `Origin`, `Referer` and `Sec-Fetch-*` as Chromium sends them
//!    (`Sec-Fetch-Site` only to potentially trustworthy origins);
//! 3. a follow-up `GET` with the cookies the answer set, as the SPA's next call.
//!
//! No redirects are followed and no cookie jar is kept: the doctor reports what the server
//! said, not what a client library made of it. The real request is sent even when the preflight
//! fails (a browser would not), so the cookie rules can still be checked; the preflight findings
//! say that the browser stops there.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

use super::rules::{
    Credentials, Exchange, Observed, ServerKind, preflight_reason, quote_body, redact_set_cookie,
    relation, request_headers_list, sec_fetch_site,
};
use crate::origin::Origin;
use crate::origins::Relation;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// The page's origin.
    pub page: Origin,
    /// The API URL the page calls.
    pub api: Url,
    /// Where the follow-up goes (default: [`default_later`]).
    pub later: Option<Url>,
    /// Method of the real request.
    pub method: String,
    /// Headers the SPA sets (lower-case names), including `content-type` when there is a body.
    pub headers: Vec<(String, String)>,
    /// The request body (never logged or reported: it may hold a password).
    pub body: Option<Vec<u8>>,
    /// The SPA's credentials mode.
    pub credentials: Credentials,
    /// Host names to resolve to an address instead of DNS (`--resolve api.acme.test:127.0.0.1`),
    /// to test named hosts on loopback.
    pub resolve: Vec<(String, IpAddr)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// PEM certificates to trust besides the system's (`--cacert`), e.g. a development CA.
    /// Certificates are always verified, as a browser would.
    pub extra_roots: Vec<Vec<u8>>,
    /// Whether `body` is a real login (`--username … --password-stdin`): the report then does
    /// not advise logging in.
    pub login: bool,
}

/// Why the probe could not observe an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A request failed before any answer (refused, timed out, TLS, …).
    #[error("{step} to {url} failed: {source}")]
    Transport {
        /// `preflight`, `request` or `follow-up`.
        step: &'static str,
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The method is not a valid HTTP method.
    #[error("{0:?} is not an HTTP method")]
    Method(String),
}

/// Where a SPA calls after logging in: `…/login` → `…/me` (Vestibule, Django REST auth and many
/// others), otherwise the API URL itself.
pub fn default_later(api: &Url) -> Url {
    let mut later = api.clone();
    if let Some(prefix) = api.path().strip_suffix("/login") {
        later.set_path(&format!("{prefix}/me"));
    }
    later.set_query(None);
    later
}

fn observe(res: &reqwest::Response) -> Observed {
    Observed {
        status: res.status().as_u16(),
        headers: res
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        error_body: None,
    }
}

/// The first bytes of an error answer's body, quoted ([`quote_body`]: one line, "…" when cut).
async fn error_body(res: &mut reqwest::Response) -> Option<String> {
    const LIMIT: usize = 300;
    if res.status().as_u16() < 400 {
        return None;
    }
    let mut buf = Vec::new();
    // One byte past the limit tells a body cut short from one that fits exactly.
    while buf.len() <= LIMIT {
        match res.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    quote_body(&buf, LIMIT)
}

const USER_AGENT: &str = concat!("vestibule-doctor/", env!("CARGO_PKG_VERSION"));

/// Sends the preflight (if needed), the real request and the follow-up.
///
/// # Errors
/// [`ProbeError`] when a request gets no answer at all; any answer, even a 5xx, is observed.
pub async fn probe(req: &ProbeRequest) -> Result<Exchange, ProbeError> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| ProbeError::Method(req.method.clone()))?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(req.timeout)
        .no_proxy()
        .user_agent(USER_AGENT);
    for (host, ip) in &req.resolve {
        // The port is ignored by reqwest: the URL's port is used.
        builder = builder.resolve(host, SocketAddr::new(*ip, 0));
    }
    for pem in &req.extra_roots {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(ProbeError::Client)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(ProbeError::Client)?;
    let api_origin = Origin::from_url(&req.api).unwrap_or_else(|| req.page.clone());
    let rel = relation(&req.page, &api_origin);
    let later = req.later.clone().unwrap_or_else(|| default_later(&req.api));
    let page = req.page.to_string();
    let sec_site = sec_fetch_site(&req.page, &api_origin);
    let with_fetch_headers = |mut rb: reqwest::RequestBuilder, site: Option<&str>| {
        rb = rb
            .header("accept", "*/*")
            .header("sec-fetch-mode", "cors")
            .header("sec-fetch-dest", "empty")
            .header("referer", format!("{page}/"));
        if let Some(s) = site {
            rb = rb.header("sec-fetch-site", s);
        }
        rb
    };

    let preflight =
        if rel != Relation::SameOrigin && preflight_reason(&req.method, &req.headers).is_some() {
            let mut rb = with_fetch_headers(
                client.request(reqwest::Method::OPTIONS, req.api.clone()),
                sec_site,
            )
            .header("origin", &page)
            .header("access-control-request-method", &req.method);
            if let Some(list) = request_headers_list(&req.headers) {
                rb = rb.header("access-control-request-headers", list);
            }
            let res = rb.send().await.map_err(|source| ProbeError::Transport {
                step: "preflight",
                url: req.api.to_string(),
                source,
            })?;
            Some(observe(&res))
        } else {
            None
        };

    let mut rb = with_fetch_headers(client.request(method.clone(), req.api.clone()), sec_site);
    // Chromium sends Origin on every cross-origin request and on same-origin non-GET/HEAD ones.
    if rel != Relation::SameOrigin || !matches!(req.method.as_str(), "GET" | "HEAD") {
        rb = rb.header("origin", &page);
    }
    for (n, v) in &req.headers {
        rb = rb.header(n.as_str(), v.as_str());
    }
    if let Some(body) = &req.body {
        rb = rb.body(body.clone());
    }
    let mut res = rb.send().await.map_err(|source| ProbeError::Transport {
        step: "request",
        url: req.api.to_string(),
        source,
    })?;
    let mut response = observe(&res);
    response.error_body = error_body(&mut res).await;
    drop(res);

    // The follow-up carries every cookie the answer set (the rules decide whether a browser would).
    let pairs: Vec<String> = response
        .get_all("set-cookie")
        .filter_map(|line| {
            let c = cookie::Cookie::parse(line.to_owned()).ok()?;
            let removal = c.max_age().is_some_and(|m| m.is_zero() || m.is_negative());
            (!removal).then(|| format!("{}={}", c.name(), c.value()))
        })
        .collect();
    let later_origin = Origin::from_url(&later).unwrap_or_else(|| api_origin.clone());
    let mut rb = with_fetch_headers(
        client.get(later.clone()),
        sec_fetch_site(&req.page, &later_origin),
    );
    if relation(&req.page, &later_origin) != Relation::SameOrigin {
        rb = rb.header("origin", &page);
    }
    if !pairs.is_empty() {
        rb = rb.header("cookie", pairs.join("; "));
    }
    let followup = match rb.send().await {
        Ok(res) => Some(observe(&res)),
        Err(e) => {
            tracing::debug!(error = %e, "doctor follow-up failed");
            None
        }
    };
    tracing::debug!(
        set_cookie = ?response.get_all("set-cookie").map(redact_set_cookie).collect::<Vec<_>>(),
        "doctor probe done"
    );
    let server = ServerKind::recognise(
        preflight
            .iter()
            .chain(std::iter::once(&response))
            .chain(followup.iter()),
    );
    Ok(Exchange {
        page: req.page.clone(),
        api: req.api.clone(),
        method: req.method.clone(),
        request_headers: req.headers.clone(),
        credentials: req.credentials,
        preflight,
        response: Some(response),
        server,
        login_given: req.login,
        later,
        followup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_calls_go_to_me_after_login() {
        let u = |s: &str| Url::parse(s).expect("url");
        assert_eq!(
            default_later(&u("http://localhost:8000/auth/login")).as_str(),
            "http://localhost:8000/auth/me"
        );
        assert_eq!(
            default_later(&u("http://localhost:8000/api/items?x=1")).as_str(),
            "http://localhost:8000/api/items"
        );
    }
}
