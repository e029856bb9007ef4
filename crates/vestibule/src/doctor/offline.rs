//! `vestibule doctor --config vestibule.toml --page …`: the exchange a Vestibule server with this
//! configuration would have with the page, derived with no server and no database.
//!
//! The answers come from the server's own code, not from a re-implementation: the preflight and
//! the CORS headers from [`crate::cors::cors_layer`] (run in process), the CSRF origin decision
//! from [`crate::csrf::check_origin`] (a refused login is the server's 403
//! `csrf_origin_untrusted`, body and all), the `Set-Cookie` from the session cookie
//! configuration the server would use. A login the CSRF check lets through is assumed to
//! succeed, and the SPA to call like the Vestibule client (`credentials: 'include'`, a JSON
//! body, the headers Chromium adds).

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::Response;
use tower::{Layer, ServiceExt, service_fn};
use url::Url;

use super::rules::{Credentials, Exchange, Observed, ServerKind, quote_body, sec_fetch_site};
use crate::origin::Origin;

/// The login path of the Vestibule API.
const LOGIN: &str = "/auth/login";
/// Where the SPA calls next.
const ME: &str = "/auth/me";

/// The most of an error body kept as evidence (the probe keeps as much).
const BODY_LIMIT: usize = 300;

async fn observe(res: Response) -> Observed {
    let mut seen = observe_head(&res);
    if res.status().as_u16() >= 400 {
        // In process and small (the server's own error JSON); the quote is cut to BODY_LIMIT.
        let bytes = axum::body::to_bytes(res.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        seen.error_body = quote_body(&bytes, BODY_LIMIT);
    }
    seen
}

fn observe_head(res: &Response) -> Observed {
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

/// What the offline check needs of a validated configuration (`Config` has all four): the
/// parts a login answer is made of, not the whole configuration.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    /// `public_url`'s origin.
    pub public_origin: &'a Origin,
    /// The session cookie and lifetimes.
    pub session: &'a crate::session::SessionConfig,
    /// The CORS section, run through the real layer.
    pub cors: &'a crate::cors::CorsConfig,
    /// The origins policy the CORS layer and the CSRF decision ask.
    pub origins: &'a std::sync::Arc<crate::origins::OriginsPolicy>,
}

/// The exchange between `page` and a server configured as `server`, with the SPA's
/// `credentials` mode.
///
/// # Errors
/// Only if the configured public origin does not make a URL (validation prevents it).
pub async fn exchange(
    server: Server<'_>,
    page: &Origin,
    credentials: Credentials,
) -> Result<Exchange, url::ParseError> {
    let config = server;
    let base = config.public_origin.to_string();
    let api = Url::parse(&format!("{base}{LOGIN}"))?;
    let later = Url::parse(&format!("{base}{ME}"))?;
    let cookie = config.session.cookie.clone();
    let max_age = i64::try_from(config.session.idle_timeout.as_secs()).unwrap_or(i64::MAX / 2);
    let policy = config.origins.clone();
    let inner = service_fn(move |req: Request<Body>| {
        let cookie = cookie.clone();
        let policy = policy.clone();
        async move {
            if req.method() == Method::POST
                && let Err(refused) = crate::csrf::check_origin(&policy, req.headers())
            {
                return Ok::<_, Infallible>(axum::response::IntoResponse::into_response(refused));
            }
            let mut res = Response::new(Body::empty());
            if req.uri().path() == LOGIN {
                // A placeholder of a real token's length; values are redacted in reports anyway.
                let set = cookie.build("v".repeat(48), max_age).to_string();
                if let Ok(v) = HeaderValue::from_str(&set) {
                    res.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            Ok::<_, Infallible>(res)
        }
    });
    let svc = crate::cors::cors_layer(config.cors, config.origins).layer(inner);
    let page_text = page.to_string();
    // What Chromium adds to the page's fetch: the CSRF decision reads Sec-Fetch-Site and Host.
    let site = sec_fetch_site(page, config.public_origin);
    let host = api.host_str().map(|h| match api.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_owned(),
    });
    let call = |method: Method, path: &str, extra: &[(&str, &str)]| {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ORIGIN, page_text.as_str());
        if let Some(site) = site {
            b = b.header("sec-fetch-site", site);
        }
        if let Some(host) = &host {
            b = b.header(header::HOST, host.as_str());
        }
        for (n, v) in extra {
            b = b.header(*n, *v);
        }
        let req = b.body(Body::empty()).unwrap_or_default();
        let svc = svc.clone();
        async move {
            match svc.oneshot(req).await {
                Ok(res) => observe(res).await,
                Err(never) => match never {},
            }
        }
    };
    let cross_origin = page != config.public_origin;
    let preflight = if cross_origin {
        Some(
            call(
                Method::OPTIONS,
                LOGIN,
                &[
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
            )
            .await,
        )
    } else {
        None
    };
    let response = call(Method::POST, LOGIN, &[("content-type", "application/json")]).await;
    let followup = call(Method::GET, ME, &[]).await;
    Ok(Exchange {
        page: page.clone(),
        api,
        method: "POST".into(),
        request_headers: vec![("content-type".into(), "application/json".into())],
        credentials,
        preflight,
        response: Some(response),
        later,
        followup: Some(followup),
        server: ServerKind::Vestibule,
        login_given: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RawConfig};
    use crate::doctor::rules::{Status, diagnose};

    fn config(public_url: &str, spa: &[&str]) -> Config {
        let raw = RawConfig {
            public_url: Some(public_url.into()),
            spa_origins: spa.iter().map(|s| (*s).to_owned()).collect(),
            ..RawConfig::default()
        };
        raw.validate().expect("valid config")
    }

    fn page(s: &str) -> Origin {
        Origin::parse(s).expect("origin")
    }

    #[tokio::test]
    async fn a_listed_same_site_spa_works_everywhere() {
        let c = config("http://localhost:8000", &["http://localhost:3000"]);
        let ex = exchange(
            c.offline_server(),
            &page("http://localhost:3000"),
            Credentials::Include,
        )
        .await
        .expect("exchange");
        let d = diagnose(&ex);
        assert!(d.all_work(), "{d:#?}");
        assert!(
            ex.response
                .as_ref()
                .is_some_and(|r| r.get("set-cookie").is_some())
        );
    }

    #[tokio::test]
    async fn an_unlisted_spa_is_told_the_config_key() {
        let c = config("http://localhost:8000", &["http://localhost:3000"]);
        let d = diagnose(
            &exchange(
                c.offline_server(),
                &page("http://localhost:4000"),
                Credentials::Include,
            )
            .await
            .expect("exchange"),
        );
        assert!(!d.all_work());
        let f = d
            .findings
            .iter()
            .find(|f| f.rule == "preflight-allow-origin" && f.status == Status::Fail)
            .expect("preflight refused");
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("spa_origins = [\"http://localhost:4000\"]")),
            "{f:?}"
        );
    }

    #[tokio::test]
    async fn a_cross_site_spa_gets_chips_and_the_safari_caveat() {
        let c = config("https://api.acme.com", &["https://app.other.com"]);
        let d = diagnose(
            &exchange(
                c.offline_server(),
                &page("https://app.other.com"),
                Credentials::Include,
            )
            .await
            .expect("exchange"),
        );
        let v: Vec<Status> = d.verdicts.iter().map(|v| v.status).collect();
        assert_eq!(
            v,
            [Status::Pass, Status::Pass, Status::Pass, Status::Fail],
            "{d:#?}"
        );
    }

    /// The bug this fixes: the offline check predicted 200 (and a stored cookie) for a login the
    /// server refuses with 403 `csrf_origin_untrusted`.
    #[tokio::test]
    async fn a_page_not_trusted_for_csrf_is_predicted_a_403_csrf_origin_untrusted() {
        let c = config("http://localhost:8000", &["http://localhost:3000"]);
        let ex = exchange(
            c.offline_server(),
            &page("http://localhost:4000"),
            Credentials::Include,
        )
        .await
        .expect("exchange");
        let login = ex.response.as_ref().expect("answer");
        assert_eq!(login.status, 403);
        assert!(login.get("set-cookie").is_none(), "no cookie on a refusal");
        assert_eq!(
            crate::doctor::rules::error_code(login).as_deref(),
            Some("csrf_origin_untrusted"),
            "{login:?}"
        );
        let d = diagnose(&ex);
        let f = d
            .findings
            .iter()
            .find(|f| f.rule == "response-status")
            .expect("status finding");
        assert_eq!(f.status, Status::Fail);
        assert!(f.summary.contains("csrf_origin_untrusted"), "{f:?}");
    }

    #[tokio::test]
    async fn trusted_for_writes_only_passes_csrf_but_not_cors() {
        let raw = RawConfig {
            public_url: Some("http://localhost:8000".into()),
            csrf: crate::config::RawCsrf {
                trusted_origins: vec!["http://localhost:4000".into()],
            },
            ..RawConfig::default()
        };
        let c = raw.validate().expect("valid config");
        let ex = exchange(
            c.offline_server(),
            &page("http://localhost:4000"),
            Credentials::Include,
        )
        .await
        .expect("exchange");
        assert_eq!(ex.response.as_ref().map(|r| r.status), Some(200));
        assert!(
            !diagnose(&ex).all_work(),
            "the page still cannot read the answer"
        );
    }
}
