//! What the same-origin proxy forwards where: `[[upstream]]` (production gateway), `[dev]`
//! (`vestibule dev` in front of a frontend dev server) and `static_dir` (a built SPA).

use std::path::PathBuf;
use std::time::Duration;

use axum::http::uri::Authority;
use axum::http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// Who may pass through an upstream prefix.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamPolicy {
    /// Anonymous requests get 401 at the gateway and never reach the upstream (the default:
    /// a forgotten setting must not expose a backend).
    #[default]
    RequireAuth,
    /// Anonymous requests pass without identity headers; the upstream decides.
    AnonymousOk,
}

/// One `[[upstream]]` table as written.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstream {
    /// Path prefix forwarded to this upstream (`/api` matches `/api` and `/api/…`).
    pub prefix: String,
    /// The upstream's base URL, `http://host:port` (plain HTTP/1.1 to a local or private backend).
    pub url: String,
    /// `require_auth` (default) or `anonymous_ok`.
    pub policy: UpstreamPolicy,
    /// Send `Host: <upstream host>` instead of the browser's (Vite's `changeOrigin`).
    pub change_origin: bool,
    /// Remove the prefix from the path sent upstream (`/api/notes` → `/notes`); the upstream's
    /// `Location` and cookie `Path` are mapped back under the prefix.
    pub strip_prefix: bool,
    /// How long to wait for a TCP connection ("5s").
    pub connect_timeout: String,
    /// How long to wait for the response headers ("60s"); bodies stream without a limit.
    pub response_timeout: String,
    /// Forward the client's `Authorization` header (off: the gateway consumed it).
    pub forward_authorization: bool,
    /// Forward Vestibule's session cookie (off: the upstream gets the identity headers instead).
    pub forward_session_cookie: bool,
    /// Name used in error pages ("the notes API"); default "the upstream for PREFIX".
    pub name: Option<String>,
    /// What to run when the upstream is down, said in the 502 ("start it (npm run dev)").
    pub start_hint: Option<String>,
    /// Also send `X-Vestibule-Assertion`: a 60-second EdDSA JWT of the identity, verifiable
    /// with `GET /auth/jwks.json`; one login's is reused for 30 s.
    pub identity_assertion: bool,
    /// Send `Authorization: Bearer <access token>` of a session that logged in through an
    /// OpenID provider (refreshed shortly before it expires; the browser never sees it).
    pub forward_access_token: bool,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            url: String::new(),
            policy: UpstreamPolicy::RequireAuth,
            change_origin: false,
            strip_prefix: false,
            connect_timeout: "5s".into(),
            response_timeout: "60s".into(),
            forward_authorization: false,
            forward_session_cookie: false,
            name: None,
            start_hint: None,
            identity_assertion: false,
            forward_access_token: false,
        }
    }
}

/// `[dev]`: `vestibule dev` settings (flags override them).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawDev {
    /// Set by `vestibule dev`; turns the rest of this table on.
    pub enabled: bool,
    /// The frontend dev server (Vite, webpack), e.g. `http://127.0.0.1:5173`; everything that is
    /// neither `/auth` nor an API prefix goes there, WebSockets (hot reload) included.
    pub frontend: Option<String>,
    /// What starts the frontend dev server, named when it is not answering.
    pub frontend_command: String,
    /// API backends as `PREFIX=URL` (`/api=http://127.0.0.1:8001`).
    pub api: Vec<String>,
    /// Where the dev proxy listens (`--listen`); default `127.0.0.1:3000`.
    pub listen: Option<String>,
    /// The dev proxy's URL as the browser sees it; default `http://localhost:<port>`.
    pub public_url: Option<String>,
    /// Open signup in development (default true, like `--demo`).
    pub signup: bool,
}

impl Default for RawDev {
    fn default() -> Self {
        Self {
            enabled: false,
            frontend: None,
            frontend_command: "npm run dev".into(),
            api: Vec::new(),
            listen: None,
            public_url: None,
            signup: true,
        }
    }
}

/// `[static_site]`: settings of the built SPA served with `static_dir` / `--static`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawStaticSite {
    /// `[static_site.headers]`: response headers for every file of the SPA (`index.html` and
    /// assets), on top of [`DEFAULT_STATIC_HEADERS`]: a name sets or replaces one, an empty value
    /// removes a default. E.g. `"Content-Security-Policy" = "default-src 'self'; frame-ancestors 'none'"`,
    /// `"Strict-Transport-Security" = "max-age=63072000; includeSubDomains"`.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Headers every static response gets unless `[static_site.headers]` says otherwise: no framing
/// by other sites (clickjacking), no `<base>` hijack, no plugins. They restrict nothing an SPA
/// normally does (scripts, styles, fetches), so they are safe to have on by default; a full
/// script CSP and HSTS depend on the app and the deployment, so they are the operator's to add.
/// (`X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` are on every response
/// of the server already; a configured `Referrer-Policy` replaces the latter for the SPA.)
pub const DEFAULT_STATIC_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "frame-ancestors 'self'; base-uri 'self'; object-src 'none'",
    ),
    ("x-frame-options", "SAMEORIGIN"),
];

/// Headers `[static_site.headers]` may not set: the file server's own (type, length, encoding,
/// caching, validators), hop-by-hop ones, and cookies (Vestibule's to set).
const RESERVED_STATIC_HEADERS: &[&str] = &[
    "accept-ranges",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "date",
    "etag",
    "keep-alive",
    "last-modified",
    "location",
    "proxy-connection",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "vary",
];

/// The static site's response headers: the defaults merged with `[static_site.headers]`, each
/// name and value checked (a problem per bad entry).
pub(crate) fn static_headers(
    raw: &RawStaticSite,
    problems: &mut Vec<Problem>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out: Vec<(HeaderName, HeaderValue)> = DEFAULT_STATIC_HEADERS
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect();
    for (name, value) in &raw.headers {
        let key = format!("static_site.headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.trim().as_bytes()) else {
            problems.push(Problem {
                key,
                message: format!("{name:?} is not a header name (letters, digits and -)"),
            });
            continue;
        };
        if RESERVED_STATIC_HEADERS.contains(&header.as_str()) {
            problems.push(Problem {
                key,
                message: format!(
                    "{header} is set by the static file server itself (or is Vestibule's) and cannot be configured"
                ),
            });
            continue;
        }
        out.retain(|(n, _)| *n != header);
        let value = value.trim();
        if value.is_empty() {
            continue; // removes the default
        }
        // Visible ASCII and spaces only: no line breaks (header injection), no obs-text.
        match HeaderValue::from_str(value) {
            Ok(v)
                if value
                    .bytes()
                    .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) =>
            {
                out.push((header, v));
            }
            _ => problems.push(Problem {
                key,
                message: "the value must be printable ASCII on one line".into(),
            }),
        }
    }
    out
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Path prefix (`/` for the catch-all frontend).
    pub prefix: String,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// The URL as configured, for messages.
    pub url: String,
    /// Who may pass.
    pub policy: UpstreamPolicy,
    /// Rewrite `Host` to the upstream's.
    pub change_origin: bool,
    /// Remove the prefix from the forwarded path.
    pub strip_prefix: bool,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time to the response headers.
    pub response_timeout: Duration,
    /// Forward `Authorization`.
    pub forward_authorization: bool,
    /// Forward the session cookie.
    pub forward_session_cookie: bool,
    /// Send `X-Vestibule-User-Id` / `-Username` (the dev frontend does not need them).
    pub identity_headers: bool,
    /// Human name for error pages.
    pub name: String,
    /// What to do when it is down.
    pub start_hint: String,
    /// Send a signed identity assertion.
    pub identity_assertion: bool,
    /// Send the OpenID provider's access token as `Authorization: Bearer`.
    pub forward_access_token: bool,
    /// The 502 page reloads itself until the upstream answers (development: start the dev
    /// server and the tab recovers; never in production, where it would hammer a dead backend).
    pub reload_error_page: bool,
    /// The 502/504 names the upstream's URL, name and start hint. Only for `[dev]` upstreams
    /// (`vestibule dev`, on the developer's own machine); a production `[[upstream]]`'s answer
    /// gives the code, the prefix and the request id, and the details go to the log.
    pub detailed_errors: bool,
}

impl Upstream {
    /// Whether `path` belongs to this upstream (`/api` matches `/api`, `/api/x`, not `/apix`).
    pub fn matches(&self, path: &str) -> bool {
        self.prefix == "/"
            || path
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// The validated proxy settings.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Upstreams, longest prefix first.
    pub upstreams: Vec<Upstream>,
    /// A built SPA to serve for everything else.
    pub static_dir: Option<PathBuf>,
    /// Response headers of the SPA's files (`[static_site.headers]` over the defaults).
    pub static_headers: Vec<(HeaderName, HeaderValue)>,
    /// `vestibule dev` mode.
    pub dev: bool,
    /// The assertion signing key: loaded (or created) by `App::build` next to the database when
    /// an upstream wants assertions; an in-memory key is made if it is missing.
    pub assertion_key: Option<std::sync::Arc<super::assertion::IdentityKey>>,
}

impl ProxyConfig {
    /// Whether anything is proxied or served besides Vestibule's own routes.
    pub fn is_active(&self) -> bool {
        !self.upstreams.is_empty() || self.static_dir.is_some()
    }

    /// Whether an upstream wants signed identity assertions.
    pub fn needs_assertion_key(&self) -> bool {
        self.upstreams.iter().any(|u| u.identity_assertion)
    }

    /// Whether `/` belongs to the proxy (a catch-all upstream or a static site) rather than to
    /// the demo page.
    pub fn serves_root(&self) -> bool {
        self.static_dir.is_some() || self.upstreams.iter().any(|u| u.prefix == "/")
    }
}

// The checks live in `validate.rs` (the file would pass 600 lines with them); `config` keeps
// the types and re-exports the one entry point.
pub(crate) use super::validate::validate;
#[cfg(test)]
use super::validate::{nests, points_at};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_prefixes_are_told_from_siblings() {
        assert!(nests("/api", "/api/admin"));
        assert!(nests("/", "/api"));
        assert!(!nests("/api", "/apix"));
        assert!(!nests("/api", "/api"));
        assert!(!nests("/api/admin", "/api"));
    }

    #[test]
    fn an_upstream_on_the_listen_address_is_a_loop() {
        assert!(points_at("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(points_at("http://localhost:8080", "127.0.0.1:8080"));
        assert!(points_at("http://127.0.0.1:8080", "0.0.0.0:8080"));
        assert!(points_at("http://[::1]:8080/", "[::1]:8080"));
        assert!(!points_at("http://127.0.0.1:8001", "127.0.0.1:8080"));
        assert!(!points_at("http://10.0.0.5:8080", "127.0.0.1:8080"));
        assert!(!points_at("not a url", "127.0.0.1:8080"));
    }

    fn headers(pairs: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<String>) {
        let raw = RawStaticSite {
            headers: pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let mut problems = Vec::new();
        let out = static_headers(&raw, &mut problems)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        (out, problems.into_iter().map(|p| p.key).collect())
    }

    #[test]
    fn static_headers_default_merge_and_remove() {
        let (out, problems) = headers(&[]);
        assert!(problems.is_empty());
        assert_eq!(out.len(), DEFAULT_STATIC_HEADERS.len());
        let (out, problems) = headers(&[
            ("Content-Security-Policy", "default-src 'self'"),
            ("X-Frame-Options", ""),
            ("Strict-Transport-Security", "max-age=63072000"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            out,
            vec![
                (
                    "content-security-policy".to_owned(),
                    "default-src 'self'".to_owned()
                ),
                (
                    "strict-transport-security".to_owned(),
                    "max-age=63072000".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn static_headers_refuse_bad_names_values_and_reserved_headers() {
        for (name, value) in [
            ("bad header", "x"),
            ("x-ok", "line\r\nSet-Cookie: a=b"),
            ("x-ok", "caf\u{e9}"),
            ("Set-Cookie", "a=b"),
            ("content-type", "text/plain"),
            ("Cache-Control", "no-store"),
            ("transfer-encoding", "chunked"),
        ] {
            let (_, problems) = headers(&[(name, value)]);
            assert_eq!(
                problems,
                vec![format!("static_site.headers.{name}")],
                "{name}: {value:?} accepted"
            );
        }
    }

    fn up(prefix: &str, url: &str) -> RawUpstream {
        RawUpstream {
            prefix: prefix.into(),
            url: url.into(),
            ..RawUpstream::default()
        }
    }

    #[test]
    fn prefixes_match_whole_segments_and_sort_longest_first() {
        let mut p = Vec::new();
        let c = validate(
            &[
                up("/api", "http://127.0.0.1:8001"),
                up("/api/admin", "http://127.0.0.1:8002/"),
            ],
            &RawDev::default(),
            None,
            "127.0.0.1:8000",
            &mut p,
            &mut Vec::new(),
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.upstreams[0].prefix, "/api/admin");
        let api = &c.upstreams[1];
        assert!(api.matches("/api") && api.matches("/api/x") && !api.matches("/apix"));
        assert_eq!(api.policy, UpstreamPolicy::RequireAuth);
        assert_eq!(api.authority.as_str(), "127.0.0.1:8001");
    }

    #[test]
    fn bad_upstreams_are_named_by_key() {
        let mut p = Vec::new();
        validate(
            &[
                up("api", "http://127.0.0.1:1"),
                up("/auth/x", "http://127.0.0.1:1"),
                up("/x/", "http://127.0.0.1:1"),
                up("/y", "https://backend.internal"),
                up("/z", "http://127.0.0.1:1/base"),
                RawUpstream {
                    connect_timeout: "soon".into(),
                    ..up("/w", "http://127.0.0.1:1")
                },
                up("/", "http://127.0.0.1:1"),
            ],
            &RawDev {
                enabled: true,
                api: vec!["nope".into()],
                ..RawDev::default()
            },
            None,
            "127.0.0.1:8000",
            &mut p,
            &mut Vec::new(),
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "upstream[0].prefix",
            "upstream[1].prefix",
            "upstream[2].prefix",
            "upstream[3].url",
            "upstream[4].url",
            "upstream[5].connect_timeout",
            "dev.api[0]",
            "dev.frontend",
        ] {
            assert!(keys.contains(&k), "{k} missing from {p:#?}");
        }
    }

    #[test]
    fn dev_mode_names_the_cookie_after_the_port_and_sets_production_aside() {
        let mut raw = crate::config::RawConfig {
            public_url: Some("https://api.acme.com".into()),
            spa_origins: vec!["https://www.acme.com".into()],
            ..crate::config::RawConfig::default()
        };
        raw.dev.listen = Some("127.0.0.1:3100".into());
        raw.dev.frontend = Some("http://127.0.0.1:5173".into());
        crate::config::apply_dev(&mut raw);
        let c = raw.validate().expect("valid");
        assert_eq!(c.session.cookie.name, "vestibule_session_3100");
        assert_eq!(c.public_origin.to_string(), "http://localhost:3100");
        assert!(c.signup && c.proxy.dev);
    }

    #[test]
    fn dev_mode_adds_the_api_prefixes_and_the_frontend_last() {
        let mut p = Vec::new();
        let c = validate(
            &[],
            &RawDev {
                enabled: true,
                frontend: Some("http://127.0.0.1:5173".into()),
                api: vec!["/api=http://127.0.0.1:8001".into()],
                ..RawDev::default()
            },
            None,
            "127.0.0.1:3000",
            &mut p,
            &mut Vec::new(),
        );
        assert!(p.is_empty(), "{p:?}");
        assert!(c.dev && c.serves_root());
        assert_eq!(c.upstreams[0].prefix, "/api");
        assert_eq!(c.upstreams[1].prefix, "/");
        assert_eq!(c.upstreams[1].start_hint, "start it (npm run dev)");
        assert!(!c.upstreams[1].identity_headers);
    }
}
