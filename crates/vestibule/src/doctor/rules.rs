//! The browser rules of `browser-cookie-rules.md`, as pure functions over one observed exchange.
//!
//! Nothing here does I/O: the [`probe`](super::probe) (a live server), [`offline`](super::offline)
//! (a configuration) and tests build an [`Exchange`]; [`diagnose`] turns it into findings, each
//! with the rule it applies, the evidence (the exact header line, cookie values redacted), the fix
//! and, for cross-site pairs, the simpler architecture. Chromium verdicts follow the measured
//! rules; Firefox and Safari differ only where their documented defaults differ (unset
//! `SameSite`, third-party cookie handling), and say so.

use cookie::{Cookie, SameSite};
use serde::Serialize;
use url::Url;

use crate::origin::Origin;
/// How `page` relates to `api`: the origins policy's definition (schemeful same-site by the
/// Public Suffix List; ports ignored).
pub use crate::origins::relation;
use crate::origins::{Relation, is_loopback_mix, is_public_suffix, site_of};

pub mod oidc;

/// A browser family whose cookie rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Chromium with third-party cookies blocked: the default measured in Chromium 156.
    #[serde(rename = "chromium-3pc-blocked")]
    ChromiumBlocked3pc,
    /// Chromium with third-party cookies allowed by the user.
    #[serde(rename = "chromium-3pc-allowed")]
    ChromiumAllowed3pc,
    /// Firefox (documented defaults: Total Cookie Protection, unset `SameSite` not treated as Lax).
    Firefox,
    /// Safari (documented defaults: all third-party cookies blocked).
    Safari,
}

impl Family {
    /// Every family, in report order.
    pub const ALL: [Family; 4] = [
        Family::ChromiumBlocked3pc,
        Family::ChromiumAllowed3pc,
        Family::Firefox,
        Family::Safari,
    ];

    /// A human label.
    pub fn label(self) -> &'static str {
        match self {
            Family::ChromiumBlocked3pc => {
                "Chromium, third-party cookies blocked (default, measured)"
            }
            Family::ChromiumAllowed3pc => "Chromium, third-party cookies allowed",
            Family::Firefox => "Firefox (documented rules)",
            Family::Safari => "Safari (documented rules)",
        }
    }

    const CHROMIUM: [Family; 2] = [Family::ChromiumBlocked3pc, Family::ChromiumAllowed3pc];
}

/// How a rule came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The rule holds.
    Pass,
    /// Works in browsers, but fragile or worth knowing.
    Warn,
    /// The browser drops the cookie, never sends it, or hides the answer.
    Fail,
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id (`cors-allow-origin`, `cookie-samesite`, …).
    pub rule: &'static str,
    /// Pass, warn or fail.
    pub status: Status,
    /// The families this outcome applies to; empty means all of them.
    pub families: Vec<Family>,
    /// One sentence: what happens and why (with the rule number of `browser-cookie-rules.md`).
    pub summary: String,
    /// The exact header line (cookie values redacted), or what is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The fix: the Vestibule config key, the header to send, or the client change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// For cross-site pairs: the simpler architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
}

impl Finding {
    fn new(rule: &'static str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            rule,
            status,
            families: Vec::new(),
            summary: summary.into(),
            evidence: None,
            fix: None,
            architecture: None,
        }
    }

    fn pass(rule: &'static str, summary: impl Into<String>) -> Self {
        Self::new(rule, Status::Pass, summary)
    }

    fn warn(rule: &'static str, summary: impl Into<String>) -> Self {
        Self::new(rule, Status::Warn, summary)
    }

    fn fail(rule: &'static str, summary: impl Into<String>) -> Self {
        Self::new(rule, Status::Fail, summary)
    }

    fn evidence(mut self, e: impl Into<String>) -> Self {
        self.evidence = Some(e.into());
        self
    }

    fn fix(mut self, f: impl Into<String>) -> Self {
        self.fix = Some(f.into());
        self
    }

    fn only(mut self, families: &[Family]) -> Self {
        self.families = families.to_vec();
        self
    }

    fn architecture(mut self, a: impl Into<String>) -> Self {
        self.architecture = Some(a.into());
        self
    }

    /// Whether this finding applies to `family`.
    pub fn applies_to(&self, family: Family) -> bool {
        self.families.is_empty() || self.families.contains(&family)
    }
}

/// The simpler architecture for a cross-site pair.
pub const CROSS_SITE_ARCHITECTURE: &str = "serve the SPA and the API from one origin (a same-origin proxy: `vestibule dev` / `vestibule serve` in front of the SPA), host them on one site (www.example.com + api.example.com), or use the bearer transport (`\"transport\": \"bearer\"` on login, then `Authorization: Bearer …`)";

/// The fetch `credentials` mode (XHR/axios: `withCredentials` true = `Include`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    /// `credentials: 'include'` / `withCredentials: true`.
    Include,
    /// fetch's default: cookies only for same-origin requests.
    SameOrigin,
    /// `credentials: 'omit'`.
    Omit,
}

impl Credentials {
    /// Parses `include`, `same-origin` or `omit`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "include" => Some(Self::Include),
            "same-origin" => Some(Self::SameOrigin),
            "omit" => Some(Self::Omit),
            _ => None,
        }
    }

    fn js(self) -> &'static str {
        match self {
            Self::Include => "include",
            Self::SameOrigin => "same-origin",
            Self::Omit => "omit",
        }
    }
}

/// An HTTP answer as observed: status and header lines (names lower-case, in order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-case; `set-cookie` once per line.
    pub headers: Vec<(String, String)>,
    /// The start of the body of an error answer (status ≥ 400), for evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_body: Option<String>,
}

impl Observed {
    /// The first value of `name` (lower-case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (lower-case).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn line(&self, name: &str, title: &str) -> String {
        match self.get(name) {
            Some(v) => format!("{title}: {v}"),
            None => format!("(no {title} header; status {})", self.status),
        }
    }
}

/// One request as the SPA makes it, and what the server answered.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The page's origin (`--page`).
    pub page: Origin,
    /// The API URL the page calls, as the browser sees it (through any proxy).
    pub api: Url,
    /// The request method.
    pub method: String,
    /// Headers the SPA sets (`content-type`, `authorization`, `x-csrf-token`, …), lower-case.
    pub request_headers: Vec<(String, String)>,
    /// The credentials mode the SPA uses.
    pub credentials: Credentials,
    /// The preflight answer, when the request needs one.
    pub preflight: Option<Observed>,
    /// The real answer (`None`: not sent, e.g. a transport error).
    pub response: Option<Observed>,
    /// Where the SPA's later calls go (the follow-up request).
    pub later: Url,
    /// The follow-up answer, sent with the returned cookies.
    pub followup: Option<Observed>,
    /// Which server answered ([`ServerKind::recognise`]): a Vestibule server is told its own
    /// config keys instead of every framework's.
    pub server: ServerKind,
    /// Whether the doctor logged in with real credentials (`--username … --password-stdin`, or
    /// the offline check's assumed login): then a missing cookie is not "log in to see more".
    pub login_given: bool,
}

/// Which server the doctor talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// A Vestibule server: its answers carry Vestibule's marks (see [`ServerKind::recognise`]).
    Vestibule,
    /// Anything else (Django, Express, …): advice names the common frameworks' settings.
    #[default]
    Unknown,
}

impl ServerKind {
    /// Recognises a Vestibule server from what it answered, with no extra request: every 401 it
    /// sends carries `WWW-Authenticate: Bearer realm="vestibule"` (the follow-up `GET /auth/me`
    /// without a session gets one), its session cookie is `vestibule_session` (or
    /// `__Host-vestibule_session`) unless renamed, and its errors are `{code, message, hint}`
    /// with one of its codes.
    pub fn recognise<'a>(answers: impl IntoIterator<Item = &'a Observed>) -> ServerKind {
        let vestibule = |o: &Observed| {
            o.get_all("www-authenticate")
                .any(|v| v.contains("realm=\"vestibule\""))
                || o.get_all("set-cookie").any(|c| {
                    let name = c.split('=').next().unwrap_or_default().trim();
                    name.trim_start_matches("__Host-")
                        .trim_start_matches("__Secure-")
                        == "vestibule_session"
                })
                || error_code(o).is_some_and(|code| {
                    serde_json::from_value::<crate::error::ErrorCode>(code.into()).is_ok()
                        && o.error_body
                            .as_deref()
                            .is_some_and(|b| b.contains("\"message\":") && b.contains("\"hint\":"))
                })
        };
        if answers.into_iter().any(vestibule) {
            ServerKind::Vestibule
        } else {
            ServerKind::Unknown
        }
    }
}

/// The `code` of a JSON error answer (`{"code": "csrf_origin_untrusted", …}`), if it has one.
pub fn error_code(answer: &Observed) -> Option<String> {
    let body = answer.error_body.as_deref()?;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        return v.get("code")?.as_str().map(str::to_owned);
    }
    // A quote cut short is no longer JSON; the code comes first in Vestibule's answers.
    let rest = body.trim_start().strip_prefix("{\"code\":\"")?;
    let code = rest.split('"').next()?;
    code.bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_')
        .then(|| code.to_owned())
}

/// The start of an answer's body for evidence: one line (control characters become spaces), at
/// most `limit` bytes cut on a character boundary, and ending with "…" when it was cut, so a
/// quote never reads as complete when it is not.
pub fn quote_body(bytes: &[u8], limit: usize) -> Option<String> {
    let cut = bytes.len() > limit;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    // A multi-byte character split by the cut decodes as U+FFFD at the end: drop it.
    let text = if cut {
        text.trim_end_matches('\u{fffd}').to_owned()
    } else {
        text
    };
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        None
    } else if cut {
        Some(format!("{text}…"))
    } else {
        Some(text.to_owned())
    }
}

/// The outcome for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The family.
    pub family: Family,
    /// `Pass` when the session works (possibly with warnings), `Fail` when it does not.
    pub status: Status,
}

/// Everything the doctor concluded about one exchange.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// The page's origin.
    pub page: String,
    /// The API URL.
    pub api: String,
    /// The request method.
    pub method: String,
    /// Same-origin, same-site or cross-site.
    pub relation: Relation,
    /// One verdict per family.
    pub verdicts: Vec<Verdict>,
    /// Every finding, failures first.
    pub findings: Vec<Finding>,
    /// Which server answered.
    pub server: ServerKind,
}

impl Diagnosis {
    /// Whether every family works.
    pub fn all_work(&self) -> bool {
        self.verdicts.iter().all(|v| v.status != Status::Fail)
    }
}

/// The `Sec-Fetch-Site` value Chromium sends, and whether it sends it at all (only to
/// potentially trustworthy origins: https, localhost, 127.0.0.1).
pub fn sec_fetch_site(page: &Origin, api: &Origin) -> Option<&'static str> {
    if !is_trustworthy(api) {
        return None;
    }
    Some(match relation(page, api) {
        Relation::SameOrigin => "same-origin",
        Relation::SameSite => "same-site",
        Relation::CrossSite => "cross-site",
    })
}

/// https, or a loopback host: a secure context that accepts `Secure` cookies (rule 6).
pub fn is_trustworthy(o: &Origin) -> bool {
    o.is_secure_context()
}

/// Why the request needs a CORS preflight (`None`: a simple request). Applies to cross-origin
/// requests only.
pub fn preflight_reason(method: &str, headers: &[(String, String)]) -> Option<String> {
    if !matches!(method, "GET" | "HEAD" | "POST") {
        return Some(format!("the method {method} is not GET, HEAD or POST"));
    }
    for (name, value) in headers {
        match name.as_str() {
            "accept" | "accept-language" | "content-language" => {}
            "content-type" => {
                let essence = value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                if !matches!(
                    essence.as_str(),
                    "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
                ) {
                    return Some(format!("Content-Type: {value} is not a form or text type"));
                }
            }
            other => return Some(format!("the header {other} is not CORS-safelisted")),
        }
    }
    None
}

/// The `Access-Control-Request-Headers` value Chromium sends: the non-safelisted header names,
/// lower-case, sorted, comma-separated.
pub fn request_headers_list(headers: &[(String, String)]) -> Option<String> {
    let mut names: Vec<&str> = headers
        .iter()
        .filter(|(n, v)| match n.as_str() {
            "accept" | "accept-language" | "content-language" => false,
            "content-type" => preflight_reason("GET", &[(n.clone(), v.clone())]).is_some(),
            _ => true,
        })
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    (!names.is_empty()).then(|| names.join(","))
}

/// Rule 12: an https page cannot call a plain-http API.
pub fn mixed_content(page: &Origin, api: &Origin) -> Finding {
    if page.scheme() == "https" && api.scheme() == "http" && !api.is_loopback() {
        Finding::fail(
            "mixed-content",
            format!("an https page cannot call the plain-http {api}: blocked as mixed content before it reaches the server (rule 12)"),
        )
        .evidence(format!("page {page} → API {api}"))
        .fix(format!("serve the API over https (public_url = \"https://{}\")", api.host()))
    } else if page.scheme() == "https" && api.scheme() == "http" {
        Finding::warn(
            "mixed-content",
            format!("an https page calling the plain-http loopback {api}: not blocked as mixed content (loopback is potentially trustworthy), but the schemes differ, so the pair is cross-site (rule 4)"),
        )
        .evidence(format!("page {page} → API {api}"))
        .fix("use the same scheme for the page and the API")
    } else {
        Finding::pass("mixed-content", "no mixed content")
    }
}

/// The pair: same-origin, same-site or cross-site, with the architecture advice for cross-site.
pub fn site_relation(page: &Origin, api: &Origin) -> Finding {
    match relation(page, api) {
        Relation::SameOrigin => Finding::pass(
            "site-relation",
            "same origin: cookies flow with default fetch settings",
        ),
        Relation::SameSite => Finding::pass(
            "site-relation",
            format!(
                "same-site, cross-origin ({}): SameSite=Lax cookies work with credentials: 'include' (rule 4)",
                site_of(page)
            ),
        ),
        Relation::CrossSite => {
            let mix = is_loopback_mix(page, api);
            let why = if mix {
                "localhost and 127.0.0.1 are different sites (rule 4)".to_owned()
            } else if site_of(page).domain() == site_of(api).domain() {
                format!(
                    "{} and {} differ in scheme: schemeful same-site makes them cross-site (rule 4)",
                    site_of(page),
                    site_of(api)
                )
            } else {
                format!(
                    "{} and {} are different sites (rule 4)",
                    site_of(page),
                    site_of(api)
                )
            };
            let mut f = Finding::warn(
                "site-relation",
                format!("cross-site: {why}; only SameSite=None; Secure cookies can flow, and third-party cookie blocking drops them unless Partitioned (rules 7, 8)"),
            )
            .evidence(format!("page site {} ≠ API site {}", site_of(page), site_of(api)))
            .architecture(CROSS_SITE_ARCHITECTURE);
            if mix {
                f = f.fix("use the same host name for both (http://localhost:PORT for page and API); never mix localhost and 127.0.0.1");
            }
            f
        }
    }
}

/// Rule 1: a cross-origin request carries and stores cookies only with `credentials: 'include'`.
pub fn credentials_mode(page: &Origin, api: &Origin, mode: Credentials, api_url: &Url) -> Finding {
    if page == api {
        return if mode == Credentials::Omit {
            Finding::fail(
                "credentials-mode",
                "credentials: 'omit' sends and stores no cookies, even same-origin (rule 1)",
            )
            .evidence("client credentials mode: omit")
            .fix("drop credentials: 'omit' (the default same-origin mode sends cookies to the same origin)")
        } else {
            Finding::pass(
                "credentials-mode",
                "same origin: the default credentials mode sends and stores cookies",
            )
        };
    }
    match mode {
        Credentials::Include => Finding::pass(
            "credentials-mode",
            "cross-origin with credentials: 'include': cookies are sent and Set-Cookie is processed (rule 1); use it on every call, not only login",
        ),
        other => Finding::fail(
            "credentials-mode",
            format!("cross-origin without credentials: 'include' ({}): the browser neither sends the cookie nor stores Set-Cookie, silently — no console error, no DevTools issue (rule 1)", other.js()),
        )
        .evidence(format!("client credentials mode: {} (the default for fetch)", other.js()))
        .fix(format!("fetch('{api_url}', {{credentials: 'include'}}) on every call (axios/XHR: withCredentials: true); `vestibule doctor --scan ./src` lists the calls")),
    }
}

fn allow_origin_ok(value: Option<&str>, page: &Origin, include: bool) -> Result<(), String> {
    match value {
        None => Err("no Access-Control-Allow-Origin".into()),
        Some("*") if include => {
            Err("Access-Control-Allow-Origin: * is refused for credentialed requests".into())
        }
        Some("*") => Ok(()),
        Some(v) => match Origin::parse(v.trim()) {
            Ok(o) if o == *page => Ok(()),
            _ => Err(format!(
                "Access-Control-Allow-Origin {v} is not the page's origin {page}"
            )),
        },
    }
}

fn list_contains(value: Option<&str>, item: &str) -> bool {
    value.is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|x| x.eq_ignore_ascii_case(item))
    })
}

/// Rule 3: the preflight must be a 2xx with the exact origin, credentials, method and headers;
/// otherwise the real request is never sent.
pub fn preflight(
    page: &Origin,
    method: &str,
    request_headers: &[(String, String)],
    mode: Credentials,
    answer: &Observed,
) -> Vec<Finding> {
    let include = mode == Credentials::Include;
    let mut out = Vec::new();
    let never_sent = "the browser never sends the real request (rule 3)";
    let vestibule = "Vestibule answers preflights in its CORS layer before sessions and CSRF";
    let refused = !(200..300).contains(&answer.status);
    if refused {
        out.push(
            Finding::fail(
                "preflight-status",
                format!("the preflight (OPTIONS, never with cookies) was answered {}: {never_sent}", answer.status),
            )
            .evidence(format!("OPTIONS → {}", answer.status))
            .fix(format!("answer OPTIONS with 2xx before authentication and CSRF checks (Django: django-cors-headers' CorsMiddleware above CsrfViewMiddleware; {vestibule})")),
        );
    } else {
        out.push(Finding::pass(
            "preflight-status",
            format!("preflight answered {}", answer.status),
        ));
    }
    match allow_origin_ok(answer.get("access-control-allow-origin"), page, include) {
        Ok(()) => out.push(Finding::pass(
            "preflight-allow-origin",
            "the preflight allows the page's origin",
        )),
        Err(why) => out.push(
            Finding::fail(
                "preflight-allow-origin",
                format!("{why} in the preflight answer: {never_sent}"),
            )
            .evidence(answer.line("access-control-allow-origin", "Access-Control-Allow-Origin"))
            .fix(format!(
                "echo `Access-Control-Allow-Origin: {page}` (Vestibule: spa_origins = [\"{page}\"])"
            )),
        ),
    }
    if refused {
        // The browser stops at the status and the origin; the other headers of a refusal are
        // beside the point.
        return out;
    }
    if include {
        if answer
            .get("access-control-allow-credentials")
            .is_some_and(|v| v.trim() == "true")
        {
            out.push(Finding::pass(
                "preflight-allow-credentials",
                "the preflight allows credentials",
            ));
        } else {
            out.push(
                Finding::fail("preflight-allow-credentials", format!("a credentialed preflight needs Access-Control-Allow-Credentials: true: {never_sent}"))
                    .evidence(answer.line("access-control-allow-credentials", "Access-Control-Allow-Credentials"))
                    .fix("send `Access-Control-Allow-Credentials: true` (Vestibule: cors.allow_credentials = true)"),
            );
        }
    }
    let methods = answer.get("access-control-allow-methods");
    let method_ok = matches!(method, "GET" | "HEAD" | "POST")
        || list_contains(methods, method)
        || (!include && methods.is_some_and(|m| m.trim() == "*"));
    if method_ok {
        out.push(Finding::pass(
            "preflight-allow-methods",
            format!("{method} is allowed"),
        ));
    } else {
        out.push(
            Finding::fail(
                "preflight-allow-methods",
                format!("the preflight does not allow {method}: {never_sent}"),
            )
            .evidence(answer.line(
                "access-control-allow-methods",
                "Access-Control-Allow-Methods",
            ))
            .fix(format!(
                "list {method} in Access-Control-Allow-Methods (Vestibule: cors.allow_methods)"
            )),
        );
    }
    let allowed = answer.get("access-control-allow-headers");
    let wildcard = !include && allowed.is_some_and(|h| h.split(',').any(|x| x.trim() == "*"));
    let missing: Vec<String> = request_headers_list(request_headers)
        .map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|h| !wildcard && !list_contains(allowed, h))
        .collect();
    if missing.is_empty() {
        out.push(Finding::pass(
            "preflight-allow-headers",
            "every requested header is allowed",
        ));
    } else {
        out.push(
            Finding::fail(
                "preflight-allow-headers",
                format!(
                    "the preflight does not allow the header(s) {}: {never_sent}",
                    missing.join(", ")
                ),
            )
            .evidence(answer.line("access-control-allow-headers", "Access-Control-Allow-Headers"))
            .fix(format!("add {} to Access-Control-Allow-Headers (Vestibule: cors.allow_headers; defaults include content-type, authorization, x-csrf-token)", missing.join(", "))),
        );
    }
    out
}

/// Rules 2 and 3 on the real answer: who may read it. A CORS failure does not stop cookie
/// storage (rule 2), but the page cannot read the login answer (`TypeError: Failed to fetch`).
pub fn cors_response(page: &Origin, mode: Credentials, answer: &Observed) -> Vec<Finding> {
    let include = mode == Credentials::Include;
    let mut out = Vec::new();
    let stored = if include {
        "; the cookie is still stored (rule 2), which makes this confusing"
    } else {
        ""
    };
    match allow_origin_ok(answer.get("access-control-allow-origin"), page, include) {
        Ok(()) => out.push(Finding::pass(
            "cors-allow-origin",
            "the answer allows the page's origin",
        )),
        Err(why) => out.push(
            Finding::fail(
                "cors-allow-origin",
                format!("{why}: the page cannot read the answer (fetch rejects with TypeError: Failed to fetch){stored}"),
            )
            .evidence(answer.line("access-control-allow-origin", "Access-Control-Allow-Origin"))
            .fix(format!("echo the exact origin, `Access-Control-Allow-Origin: {page}`, never * with credentials (Vestibule: spa_origins = [\"{page}\"])")),
        ),
    }
    if include {
        if answer
            .get("access-control-allow-credentials")
            .is_some_and(|v| v.trim() == "true")
        {
            out.push(Finding::pass(
                "cors-allow-credentials",
                "the answer allows credentials",
            ));
        } else {
            out.push(
                Finding::fail(
                    "cors-allow-credentials",
                    format!("a credentialed answer needs Access-Control-Allow-Credentials: true: the page cannot read it{stored}"),
                )
                .evidence(answer.line("access-control-allow-credentials", "Access-Control-Allow-Credentials"))
                .fix("send `Access-Control-Allow-Credentials: true` (Vestibule: cors.allow_credentials = true)"),
            );
        }
    }
    let echoes = answer
        .get("access-control-allow-origin")
        .is_some_and(|v| v.trim() != "*");
    let vary_ok = answer.get_all("vary").any(|v| {
        v.split(',')
            .map(str::trim)
            .any(|x| x == "*" || x.eq_ignore_ascii_case("origin"))
    });
    if echoes && !vary_ok {
        out.push(
            Finding::warn(
                "cors-vary",
                "the answer echoes the origin without Vary: Origin: a cache can serve one origin's answer (and its CORS headers) to another",
            )
            .evidence(answer.line("vary", "Vary"))
            .fix("add `Vary: Origin` to every answer whose CORS headers depend on the Origin (Vestibule does this on every CORS path)"),
        );
    } else {
        out.push(Finding::pass(
            "cors-vary",
            "Vary: Origin is present or not needed",
        ));
    }
    out
}

/// The real request's status: a refusal (CSRF, a missing route, a crash) means no session,
/// whatever the cookie rules say; a 401 is most likely the probe's own credentials. A Vestibule
/// server's 403 is told its config keys only; another server's, the common frameworks'.
pub fn response_status(method: &str, api: &Url, answer: &Observed, server: ServerKind) -> Finding {
    let evidence = match &answer.error_body {
        Some(b) => format!("{method} {api} → {} {b}", answer.status),
        None => format!("{method} {api} → {}", answer.status),
    };
    match answer.status {
        0..=399 => Finding::pass("response-status", format!("answered {}", answer.status)),
        401 => Finding::warn(
            "response-status",
            "the request was answered 401: check the credentials given to the doctor (--username/--password-stdin or --json-body)",
        )
        .evidence(evidence),
        403 if error_code(answer).as_deref() == Some("csrf_origin_untrusted") => Finding::fail(
            "response-status",
            "the server refused the request (403 csrf_origin_untrusted): the page's origin is not trusted for writes, so no cookie is set",
        )
        .evidence(evidence)
        .fix(match server {
            ServerKind::Vestibule => "add the page's origin to spa_origins (or to csrf.trusted_origins for writes only)",
            ServerKind::Unknown => "trust the page's origin for writes (Django: CSRF_TRUSTED_ORIGINS; Vestibule: spa_origins or csrf.trusted_origins)",
        }),
        403 => Finding::fail(
            "response-status",
            "the server refused the request (403): a cross-origin login is often refused by the CSRF origin check, before any cookie is set",
        )
        .evidence(evidence)
        .fix(match server {
            ServerKind::Vestibule => "read the answer's code and hint above; an untrusted origin is fixed in spa_origins (or csrf.trusted_origins)",
            ServerKind::Unknown => "trust the page's origin for writes (Vestibule: spa_origins, or csrf.trusted_origins; Django: CSRF_TRUSTED_ORIGINS)",
        }),
        status => Finding::fail(
            "response-status",
            format!("the server answered {status}: no session is made"),
        )
        .evidence(evidence)
        .fix("check the API URL and method (--api, --method) and the server's logs"),
    }
}

/// A `Set-Cookie` line with its value replaced by its length, for evidence and logs.
pub fn redact_set_cookie(line: &str) -> String {
    let (pair, rest) = line.split_once(';').map_or((line, ""), |(p, r)| (p, r));
    match pair.split_once('=') {
        Some((name, value)) => {
            let sep = if rest.is_empty() { "" } else { ";" };
            format!("{}=<{} bytes>{sep}{rest}", name.trim(), value.trim().len())
        }
        None => line.to_owned(),
    }
}

/// What a cookie's rules are judged against.
#[derive(Debug, Clone)]
pub struct CookieContext<'a> {
    /// The page's origin.
    pub page: &'a Origin,
    /// The URL that answered with `Set-Cookie`, as the browser sees it.
    pub api: &'a Url,
    /// Where later calls go.
    pub later: &'a Url,
    /// The client's credentials mode.
    pub credentials: Credentials,
}

/// Whether `path` path-matches `cookie_path` (RFC 6265 §5.1.4).
pub fn path_matches(cookie_path: &str, path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path[cookie_path.len()..].starts_with('/')))
}

/// The default cookie path for a request path (RFC 6265 §5.1.4): its directory.
pub fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => path[..i].to_owned(),
    }
}

/// Whether a cookie named `name` set by `api` can be shadowed by a planted cookie of the same
/// name ("cookie tossing"): any name without the `__Host-` prefix on a host other than loopback
/// or `localhost`, where a sibling subdomain (or an active attacker on plain http) can set
/// `name` with `Domain` of the parent, and the browser then sends both. Vestibule prefers the
/// cookie that opens a live session and refuses two accounts at once, but a planted cookie can
/// still log the user out or, on an anonymous visit, log them in as someone else.
pub fn cookie_tossing(name: &str, api: &Origin) -> Option<Finding> {
    if name.starts_with("__Host-") || api.is_loopback() || api.is_localhost_name() {
        return None;
    }
    Some(
        Finding::warn(
            "cookie-tossing",
            format!("{name} has no __Host- prefix on {}: a sibling subdomain or a plain-http answer can plant a cookie of the same name, which the browser sends along with it (cookie tossing)", api.host()),
        )
        .fix("serve public_url over https and leave session.cookie_domain unset: Vestibule then names the cookie __Host-… (no Domain, Path=/, Secure), which nothing else can set; otherwise trust every sibling subdomain"),
    )
}

/// Every rule on one `Set-Cookie` line (rules 4–11, prefixes, size, third-party blocking).
pub fn set_cookie(line: &str, ctx: &CookieContext<'_>) -> Vec<Finding> {
    let evidence = format!("Set-Cookie: {}", redact_set_cookie(line));
    let ev = |f: Finding| f.evidence(evidence.clone());
    let Ok(c) = Cookie::parse(line.to_owned()) else {
        return vec![ev(Finding::fail(
            "cookie-parse",
            "the Set-Cookie line has no name=value pair: browsers ignore it",
        )
        .fix("send `name=value; Path=/; HttpOnly; SameSite=Lax`"))];
    };
    let name = c.name().to_owned();
    let mut out = Vec::new();
    let Some(api) = Origin::from_url(ctx.api) else {
        return out;
    };
    // A removal (Max-Age=0 or an expiry in the past) is not a session cookie to judge.
    if c.max_age().is_some_and(|m| m.is_zero() || m.is_negative()) {
        out.push(ev(Finding::pass(
            "cookie-removal",
            format!("{name} is a removal (Max-Age=0)"),
        )));
        return out;
    }
    let secure = c.secure() == Some(true);
    let partitioned = c.partitioned() == Some(true);
    let page = ctx.page;
    let rel = relation(page, &api);

    // Size (Chromium: name + value ≤ 4096 bytes).
    let size = c.name().len() + c.value().len();
    if size > 4096 {
        out.push(ev(Finding::fail(
            "cookie-size",
            format!("{name}: name + value are {size} bytes, over the 4096-byte limit: browsers drop it"),
        ))
        .fix("keep only an id in the cookie (Vestibule stores sessions server-side)"));
    } else {
        out.push(Finding::pass(
            "cookie-size",
            format!("{name}: {size} bytes"),
        ));
    }

    // Rule 6: Secure from a non-secure origin.
    if secure && !is_trustworthy(&api) {
        out.push(ev(Finding::fail(
            "cookie-secure-scheme",
            format!("{name} is Secure but set by the plain-http {api}, which is not localhost: browsers reject it (rule 6)"),
        ))
        .fix(format!("serve the API over https, or drop Secure on plain-http development hosts (Vestibule does this when public_url is http://{}; a proxy must drop it)", api.host())));
    } else {
        out.push(Finding::pass(
            "cookie-secure-scheme",
            format!("{name}: Secure is consistent with the scheme"),
        ));
    }

    // Rule 5: SameSite=None without Secure.
    if c.same_site() == Some(SameSite::None) && !secure {
        out.push(ev(Finding::fail(
            "cookie-samesite-none-secure",
            format!("{name} is SameSite=None without Secure: browsers drop it, localhost included (rule 5)"),
        ))
        .fix("add Secure (over https or on localhost), or use SameSite=Lax for same-site pairs"));
    }

    // Prefixes.
    if name.starts_with("__Host-") {
        let ok = secure && c.path() == Some("/") && c.domain().is_none() && is_trustworthy(&api);
        if ok {
            out.push(Finding::pass(
                "cookie-prefix",
                format!("{name}: __Host- requirements met"),
            ));
        } else {
            out.push(ev(Finding::fail(
                "cookie-prefix",
                format!("{name}: a __Host- cookie must be Secure, from a secure origin, with Path=/ and no Domain; browsers reject it"),
            ))
            .fix("send Secure; Path=/ and no Domain, or drop the prefix (Vestibule adds __Host- only when public_url is https and no cookie_domain is set)"));
        }
    } else if name.starts_with("__Secure-") {
        if secure && is_trustworthy(&api) {
            out.push(Finding::pass(
                "cookie-prefix",
                format!("{name}: __Secure- requirements met"),
            ));
        } else {
            out.push(ev(Finding::fail(
                "cookie-prefix",
                format!("{name}: a __Secure- cookie must be Secure and set from a secure origin; browsers reject it"),
            ))
            .fix("send Secure over https, or drop the prefix"));
        }
    }

    // Cookie tossing: only `__Host-` makes a cookie that no sibling subdomain (and no plain-http
    // response) can shadow with one of the same name; browsers send both, the planted one
    // possibly first.
    if let Some(f) = cookie_tossing(&name, &api) {
        out.push(ev(f));
    }

    // Rules 9/10: Domain.
    if let Some(d) = c.domain() {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        let host = api.host();
        let matches = host == d || (!api.is_ip() && host.ends_with(&format!(".{d}")));
        let public = d != host && is_public_suffix(&d);
        if !matches || public {
            let why = if public {
                format!("{d} is a public suffix")
            } else {
                format!("Domain={d} does not domain-match the responding host {host}")
            };
            out.push(ev(Finding::fail(
                "cookie-domain",
                format!("{name}: {why}: browsers reject it (InvalidDomain, rule 9)"),
            ))
            .fix("drop Domain (a host-only cookie), or set a parent of the host the browser sees (Vestibule: session.cookie_domain; behind a proxy, the proxy must strip or rewrite Domain)"));
        } else {
            out.push(Finding::pass(
                "cookie-domain",
                format!("{name}: Domain={d} covers {host} (rule 10)"),
            ));
        }
    }

    // Rules 4, 7, 8: SameSite and third-party cookies, per family.
    if rel == Relation::CrossSite {
        let arch = CROSS_SITE_ARCHITECTURE;
        match c.same_site() {
            Some(s @ (SameSite::Lax | SameSite::Strict)) => {
                out.push(ev(Finding::fail(
                    "cookie-samesite",
                    format!("{name} is SameSite={s} and the request is cross-site: browsers neither store nor send it (rule 4)"),
                ))
                .fix("make page and API same-site; SameSite=None; Secure; Partitioned is the only cross-site cookie that survives third-party cookie blocking")
                .architecture(arch));
            }
            None => {
                out.push(ev(Finding::fail(
                    "cookie-samesite",
                    format!("{name} has no SameSite, which Chromium treats as Lax, and the request is cross-site: not stored, not sent (rule 4)"),
                ))
                .only(&Family::CHROMIUM)
                .fix("make page and API same-site, or send SameSite=None; Secure; Partitioned")
                .architecture(arch));
                out.push(ev(Finding::pass(
                    "cookie-samesite",
                    format!("{name} has no SameSite: Firefox and Safari do not apply Lax by default (documented, not measured)"),
                ))
                .only(&[Family::Firefox, Family::Safari]));
            }
            Some(SameSite::None) => out.push(Finding::pass(
                "cookie-samesite",
                format!("{name} is SameSite=None: allowed on cross-site requests if Secure"),
            )),
        }
        let third_party_candidate =
            c.same_site() != Some(SameSite::Lax) && c.same_site() != Some(SameSite::Strict);
        if third_party_candidate {
            let chips = partitioned && secure && is_trustworthy(&api);
            if chips {
                out.push(Finding::pass(
                    "third-party-cookies",
                    format!("{name} is SameSite=None; Secure; Partitioned (CHIPS): stored and sent cross-site even with third-party cookies blocked, per SPA site (rule 8)"),
                )
                .only(&[Family::ChromiumBlocked3pc, Family::ChromiumAllowed3pc, Family::Firefox]));
            } else {
                out.push(ev(Finding::fail(
                    "third-party-cookies",
                    format!("{name} is a third-party (cross-site) cookie without Partitioned: Chromium blocks it by default (reason UserPreferences), even SameSite=None; Secure (rule 7)"),
                ))
                .only(&[Family::ChromiumBlocked3pc])
                .fix("add Partitioned (with SameSite=None; Secure over https) — Vestibule does so for cross-site spa_origins — or avoid third-party cookies")
                .architecture(arch));
                if c.same_site() == Some(SameSite::None) && secure {
                    out.push(Finding::pass(
                        "third-party-cookies",
                        format!("{name}: SameSite=None; Secure works cross-site when third-party cookies are allowed (rule 7)"),
                    )
                    .only(&[Family::ChromiumAllowed3pc]));
                }
                out.push(Finding::warn(
                    "third-party-cookies",
                    format!("{name}: Firefox's Total Cookie Protection keeps cross-site cookies in a jar per top-level site (documented, not measured): it works for this SPA, but a login made on the API's own site is not shared"),
                )
                .only(&[Family::Firefox]));
            }
            out.push(ev(Finding::fail(
                "third-party-cookies",
                format!("{name}: Safari blocks all third-party cookies by default (documented; Partitioned is not a documented exception): not stored, not sent"),
            ))
            .only(&[Family::Safari])
            .fix("avoid third-party cookies")
            .architecture(arch));
        }
        if partitioned && !(secure && is_trustworthy(&api)) {
            out.push(ev(Finding::fail(
                "cookie-partitioned",
                format!("{name} is Partitioned but not Secure over a secure origin: dropped with no reason shown (rule 8)"),
            ))
            .fix("serve the API over https and send SameSite=None; Secure; Partitioned"));
        }
    } else {
        out.push(Finding::pass(
            "cookie-samesite",
            format!("{name}: the request is same-site, so any SameSite value works (rule 4)"),
        ));
        if partitioned && !secure {
            out.push(ev(Finding::warn(
                "cookie-partitioned",
                format!("{name} is Partitioned without Secure: browsers drop it (rule 8); Partitioned is not needed same-site"),
            ))
            .fix("drop Partitioned, or add Secure"));
        }
    }

    // Rule 11 and "sent back": does the cookie's path cover the later calls?
    let cookie_path = c
        .path()
        .map_or_else(|| default_path(ctx.api.path()), str::to_owned);
    let mut uncovered: Vec<&str> = Vec::new();
    for p in [ctx.api.path(), ctx.later.path()] {
        if !path_matches(&cookie_path, p) && !uncovered.contains(&p) {
            uncovered.push(p);
        }
    }
    if uncovered.is_empty() {
        out.push(Finding::pass(
            "cookie-sent-back",
            format!(
                "{name}: Path={cookie_path} covers {} and {}",
                ctx.api.path(),
                ctx.later.path()
            ),
        ));
    } else {
        let implicit = if c.path().is_none() {
            " (no Path attribute: it defaults to the login URL's directory)"
        } else {
            ""
        };
        out.push(ev(Finding::fail(
            "cookie-sent-back",
            format!("{name}: Path={cookie_path}{implicit} does not cover {}: stored, never sent there (NotOnPath, rule 11)", uncovered.join(", ")),
        ))
        .fix("send Path=/ (behind a proxy that serves the API under a prefix, the proxy must rewrite Path to the browser-visible prefix)"));
    }
    if ctx.later.scheme() == "http"
        && secure
        && let Some(later) = Origin::from_url(ctx.later)
        && !is_trustworthy(&later)
    {
        out.push(
            ev(Finding::fail(
                "cookie-sent-back",
                format!("{name} is Secure: never sent to the plain-http {later}"),
            ))
            .fix("call the API over https"),
        );
    }
    out
}

/// The follow-up: did the server accept its own cookie back?
pub fn followup(ex: &Exchange, answer: &Observed, cookies_sent: usize) -> Finding {
    if cookies_sent == 0 {
        return Finding::pass(
            "followup",
            format!(
                "follow-up GET {} answered {} (no cookie to send)",
                ex.later, answer.status
            ),
        );
    }
    if answer.status == 401 || answer.status == 403 {
        Finding::warn(
            "followup",
            format!("the follow-up GET {} carried the returned cookie(s) and was still answered {}: the server does not recognise its own cookie there (a different host, path or session backend?)", ex.later, answer.status),
        )
        .evidence(format!("GET {} → {}", ex.later, answer.status))
    } else {
        Finding::pass(
            "followup",
            format!(
                "the follow-up GET {} with the returned cookie(s) answered {}",
                ex.later, answer.status
            ),
        )
    }
}

/// Runs every rule on `ex`.
pub fn diagnose(ex: &Exchange) -> Diagnosis {
    let mut findings = Vec::new();
    let page = &ex.page;
    let api = Origin::from_url(&ex.api).unwrap_or_else(|| page.clone());
    let rel = relation(page, &api);
    findings.push(mixed_content(page, &api));
    findings.push(site_relation(page, &api));
    findings.push(credentials_mode(page, &api, ex.credentials, &ex.api));
    let cross_origin = rel != Relation::SameOrigin;
    if cross_origin && let Some(reason) = preflight_reason(&ex.method, &ex.request_headers) {
        match &ex.preflight {
            Some(pf) => {
                findings.push(Finding::pass(
                    "preflight-needed",
                    format!("a preflight is sent first because {reason}"),
                ));
                findings.extend(preflight(
                    page,
                    &ex.method,
                    &ex.request_headers,
                    ex.credentials,
                    pf,
                ));
            }
            None => findings.push(Finding::warn(
                "preflight-needed",
                format!("a preflight is needed because {reason}, but none was observed"),
            )),
        }
    }
    match &ex.response {
        None => findings.push(Finding::fail(
            "response",
            "no answer to the real request (connection refused or failed)",
        )),
        Some(resp) => {
            findings.push(response_status(&ex.method, &ex.api, resp, ex.server));
            if cross_origin {
                findings.extend(cors_response(page, ex.credentials, resp));
            }
            let ctx = CookieContext {
                page,
                api: &ex.api,
                later: &ex.later,
                credentials: ex.credentials,
            };
            let lines: Vec<&str> = resp.get_all("set-cookie").collect();
            if lines.is_empty() {
                // Advice to log in only helps when the doctor did not, and the request was not
                // refused for another reason (a 403 is explained by its own finding).
                let why = if resp.status >= 400 {
                    "the refusal above comes first"
                } else if ex.login_given {
                    "is --api the login endpoint?"
                } else {
                    "log in with valid credentials: --username U --password-stdin"
                };
                findings.push(Finding::warn(
                    "set-cookie",
                    format!(
                        "the answer ({}) set no cookie, so no cookie rule could be checked ({why})",
                        resp.status
                    ),
                ));
            }
            for line in &lines {
                findings.extend(set_cookie(line, &ctx));
            }
            if let Some(f) = &ex.followup {
                findings.push(followup(ex, f, lines.len()));
            }
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.status));
    let verdicts = Family::ALL
        .iter()
        .map(|&family| Verdict {
            family,
            status: if findings
                .iter()
                .any(|f| f.status == Status::Fail && f.applies_to(family))
            {
                Status::Fail
            } else {
                Status::Pass
            },
        })
        .collect();
    Diagnosis {
        page: page.to_string(),
        api: ex.api.to_string(),
        method: ex.method.clone(),
        relation: rel,
        verdicts,
        findings,
        server: ex.server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Origin {
        Origin::parse(s).expect("origin")
    }

    fn u(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    fn obs(status: u16, headers: &[(&str, &str)]) -> Observed {
        Observed {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            error_body: None,
        }
    }

    fn find<'a>(fs: &'a [Finding], rule: &str) -> Vec<&'a Finding> {
        fs.iter().filter(|f| f.rule == rule).collect()
    }

    fn status_of(fs: &[Finding], rule: &str, family: Family) -> Option<Status> {
        fs.iter()
            .filter(|f| f.rule == rule && f.applies_to(family))
            .map(|f| f.status)
            .max()
    }

    fn cookie(page: &str, api: &str, line: &str) -> Vec<Finding> {
        let page = o(page);
        let api = u(api);
        set_cookie(
            line,
            &CookieContext {
                page: &page,
                api: &api,
                later: &api,
                credentials: Credentials::Include,
            },
        )
    }

    fn cookie_status(
        page: &str,
        api: &str,
        line: &str,
        rule: &str,
        family: Family,
    ) -> Option<Status> {
        status_of(&cookie(page, api, line), rule, family)
    }

    const BLOCKED: Family = Family::ChromiumBlocked3pc;

    #[test]
    fn relation_is_schemeful_and_ignores_ports() {
        let r = |a, b| relation(&o(a), &o(b));
        assert_eq!(
            r("http://localhost:3000", "http://localhost:8000"),
            Relation::SameSite
        );
        assert_eq!(
            r("http://localhost:3000", "http://127.0.0.1:8000"),
            Relation::CrossSite
        );
        assert_eq!(
            r("http://www.acme.test", "http://api.acme.test"),
            Relation::SameSite
        );
        assert_eq!(
            r("http://www.acme.test", "https://api.acme.test"),
            Relation::CrossSite
        );
        assert_eq!(
            r("http://acme.test", "http://evil.test"),
            Relation::CrossSite
        );
        assert_eq!(
            r("http://a.test:1", "http://a.test:1"),
            Relation::SameOrigin
        );
    }

    #[test]
    fn mixed_content_fails_only_https_to_http() {
        assert_eq!(
            mixed_content(&o("https://www.a.com"), &o("http://api.a.com")).status,
            Status::Fail
        );
        assert_eq!(
            mixed_content(&o("http://www.a.com"), &o("https://api.a.com")).status,
            Status::Pass
        );
        assert_eq!(
            mixed_content(&o("https://www.a.com"), &o("https://api.a.com")).status,
            Status::Pass
        );
        let loopback = mixed_content(&o("https://localhost:3000"), &o("http://localhost:8000"));
        assert_eq!(
            loopback.status,
            Status::Warn,
            "loopback is potentially trustworthy"
        );
        assert!(loopback.summary.contains("cross-site"));
    }

    #[test]
    fn site_relation_names_the_localhost_mix_and_the_architecture() {
        let f = site_relation(&o("http://localhost:3000"), &o("http://127.0.0.1:8000"));
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.summary.contains("localhost and 127.0.0.1"),
            "{}",
            f.summary
        );
        assert!(f.fix.as_deref().is_some_and(|x| x.contains("never mix")));
        assert!(
            f.architecture
                .as_deref()
                .is_some_and(|a| a.contains("bearer"))
        );
        let f = site_relation(&o("http://localhost:3000"), &o("http://localhost:8000"));
        assert_eq!(f.status, Status::Pass);
        assert!(f.architecture.is_none());
    }

    #[test]
    fn credentials_mode_requires_include_cross_origin() {
        let page = o("http://localhost:3000");
        let api = o("http://localhost:8000");
        let url = u("http://localhost:8000/auth/login");
        let f = credentials_mode(&page, &api, Credentials::SameOrigin, &url);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("credentials: 'include'"))
        );
        assert!(f.summary.contains("silently"));
        assert_eq!(
            credentials_mode(&page, &api, Credentials::Include, &url).status,
            Status::Pass
        );
        assert_eq!(
            credentials_mode(&page, &page, Credentials::SameOrigin, &url).status,
            Status::Pass
        );
        assert_eq!(
            credentials_mode(&page, &page, Credentials::Omit, &url).status,
            Status::Fail
        );
    }

    #[test]
    fn preflight_triggers() {
        let h = |n: &str, v: &str| vec![(n.to_owned(), v.to_owned())];
        assert!(preflight_reason("POST", &h("content-type", "application/json")).is_some());
        assert!(preflight_reason("GET", &h("authorization", "Bearer x")).is_some());
        assert!(preflight_reason("DELETE", &[]).is_some());
        assert!(
            preflight_reason("POST", &h("content-type", "text/plain; charset=utf-8")).is_none()
        );
        assert!(preflight_reason("GET", &[]).is_none());
        let both = vec![
            ("x-csrf-token".to_owned(), "t".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "*/*".to_owned()),
        ];
        assert_eq!(
            request_headers_list(&both).as_deref(),
            Some("content-type,x-csrf-token")
        );
    }

    fn json_post() -> Vec<(String, String)> {
        vec![("content-type".to_owned(), "application/json".to_owned())]
    }

    #[test]
    fn a_good_preflight_passes() {
        let page = o("http://localhost:3000");
        let ok = obs(
            204,
            &[
                ("access-control-allow-origin", "http://localhost:3000"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET, POST, DELETE"),
                ("access-control-allow-headers", "content-type, x-csrf-token"),
            ],
        );
        let fs = preflight(&page, "DELETE", &json_post(), Credentials::Include, &ok);
        assert!(fs.iter().all(|f| f.status == Status::Pass), "{fs:#?}");
    }

    #[test]
    fn a_403_preflight_fails_with_the_middleware_fix() {
        let fs = preflight(
            &o("http://localhost:3000"),
            "POST",
            &json_post(),
            Credentials::Include,
            &obs(403, &[]),
        );
        let f = find(&fs, "preflight-status")[0];
        assert_eq!(f.status, Status::Fail);
        assert!(f.summary.contains("never sends the real request"));
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("CorsMiddleware"))
        );
    }

    #[test]
    fn preflight_missing_headers_credentials_and_methods_fail() {
        let page = o("http://localhost:3000");
        let bad = obs(
            204,
            &[
                ("access-control-allow-origin", "http://localhost:3000"),
                ("access-control-allow-methods", "GET, POST"),
                ("access-control-allow-headers", "x-csrf-token"),
            ],
        );
        let fs = preflight(&page, "PUT", &json_post(), Credentials::Include, &bad);
        assert_eq!(find(&fs, "preflight-allow-headers")[0].status, Status::Fail);
        assert!(
            find(&fs, "preflight-allow-headers")[0]
                .summary
                .contains("content-type")
        );
        assert_eq!(
            find(&fs, "preflight-allow-headers")[0].evidence.as_deref(),
            Some("Access-Control-Allow-Headers: x-csrf-token")
        );
        assert_eq!(
            find(&fs, "preflight-allow-credentials")[0].status,
            Status::Fail
        );
        assert_eq!(find(&fs, "preflight-allow-methods")[0].status, Status::Fail);
        // A wildcard is fine without credentials, never with them.
        let star = obs(
            204,
            &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-headers", "*"),
            ],
        );
        let fs = preflight(&page, "POST", &json_post(), Credentials::SameOrigin, &star);
        assert!(fs.iter().all(|f| f.status == Status::Pass), "{fs:#?}");
        let fs = preflight(&page, "POST", &json_post(), Credentials::Include, &star);
        assert_eq!(find(&fs, "preflight-allow-origin")[0].status, Status::Fail);
        assert_eq!(find(&fs, "preflight-allow-headers")[0].status, Status::Fail);
    }

    #[test]
    fn cors_response_rules() {
        let page = o("http://localhost:3000");
        let good = obs(
            200,
            &[
                ("access-control-allow-origin", "http://localhost:3000"),
                ("access-control-allow-credentials", "true"),
                ("vary", "Accept-Encoding, Origin"),
            ],
        );
        assert!(
            cors_response(&page, Credentials::Include, &good)
                .iter()
                .all(|f| f.status == Status::Pass)
        );
        let star = obs(
            200,
            &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
            ],
        );
        let fs = cors_response(&page, Credentials::Include, &star);
        let f = find(&fs, "cors-allow-origin")[0];
        assert_eq!(f.status, Status::Fail);
        assert!(f.summary.contains("still stored"), "rule 2: {}", f.summary);
        assert_eq!(
            f.evidence.as_deref(),
            Some("Access-Control-Allow-Origin: *")
        );
        let other = obs(
            200,
            &[("access-control-allow-origin", "http://localhost:4000")],
        );
        let fs = cors_response(&page, Credentials::Include, &other);
        assert_eq!(find(&fs, "cors-allow-origin")[0].status, Status::Fail);
        assert_eq!(find(&fs, "cors-allow-credentials")[0].status, Status::Fail);
        assert_eq!(find(&fs, "cors-vary")[0].status, Status::Warn);
        let none = obs(200, &[]);
        let f = &cors_response(&page, Credentials::Include, &none)[0];
        assert_eq!(
            f.evidence.as_deref(),
            Some("(no Access-Control-Allow-Origin header; status 200)")
        );
    }

    #[test]
    fn response_status_rules() {
        let api = u("http://localhost:8000/auth/login");
        assert_eq!(
            response_status("POST", &api, &obs(200, &[]), ServerKind::Unknown).status,
            Status::Pass
        );
        assert_eq!(
            response_status("POST", &api, &obs(401, &[]), ServerKind::Unknown).status,
            Status::Warn
        );
        let mut refused = obs(403, &[]);
        refused.error_body = Some("{\"code\":\"csrf_origin_untrusted\"}".into());
        let f = response_status("POST", &api, &refused, ServerKind::Unknown);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.evidence
                .as_deref()
                .is_some_and(|e| e.contains("403 {\"code\":\"csrf_origin_untrusted\"}"))
        );
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("CSRF_TRUSTED_ORIGINS"))
        );
        assert_eq!(
            response_status("POST", &api, &obs(500, &[]), ServerKind::Unknown).status,
            Status::Fail
        );
    }

    #[test]
    fn redaction_hides_the_value_only() {
        assert_eq!(
            redact_set_cookie("sid=secretvalue; Path=/; HttpOnly"),
            "sid=<11 bytes>; Path=/; HttpOnly"
        );
        assert_eq!(redact_set_cookie("sid=abc"), "sid=<3 bytes>");
        let fs = cookie(
            "http://localhost:3000",
            "http://localhost:8000/auth/login",
            "sid=topsecret; SameSite=None",
        );
        assert!(
            fs.iter()
                .all(|f| !f.evidence.as_deref().unwrap_or("").contains("topsecret"))
        );
    }

    #[test]
    fn samesite_lax_same_site_passes_cross_site_fails() {
        let line = "sid=v; Path=/; HttpOnly; SameSite=Lax";
        assert_eq!(
            cookie_status(
                "http://localhost:3000",
                "http://localhost:8000/auth/login",
                line,
                "cookie-samesite",
                BLOCKED
            ),
            Some(Status::Pass)
        );
        assert_eq!(
            cookie_status(
                "http://www.acme.test",
                "http://api.acme.test/auth/login",
                line,
                "cookie-samesite",
                BLOCKED
            ),
            Some(Status::Pass)
        );
        for fam in Family::ALL {
            assert_eq!(
                cookie_status(
                    "http://localhost:3000",
                    "http://127.0.0.1:8000/auth/login",
                    line,
                    "cookie-samesite",
                    fam
                ),
                Some(Status::Fail)
            );
        }
        // Unset SameSite: Lax in Chromium only.
        let unset = "sid=v; Path=/";
        assert_eq!(
            cookie_status(
                "https://a.test",
                "https://api.b.test/x",
                unset,
                "cookie-samesite",
                BLOCKED
            ),
            Some(Status::Fail)
        );
        assert_eq!(
            cookie_status(
                "https://a.test",
                "https://api.b.test/x",
                unset,
                "cookie-samesite",
                Family::Firefox
            ),
            Some(Status::Pass)
        );
    }

    #[test]
    fn samesite_none_needs_secure_even_on_localhost() {
        let fs = cookie(
            "http://localhost:3000",
            "http://localhost:8000/auth/login",
            "sid=v; Path=/; SameSite=None",
        );
        assert_eq!(
            find(&fs, "cookie-samesite-none-secure")[0].status,
            Status::Fail
        );
        let fs = cookie(
            "http://localhost:3000",
            "http://localhost:8000/auth/login",
            "sid=v; Path=/; SameSite=None; Secure",
        );
        assert!(find(&fs, "cookie-samesite-none-secure").is_empty());
    }

    #[test]
    fn secure_over_http_fails_except_on_loopback() {
        let line = "sid=v; Path=/; Secure; SameSite=Lax";
        assert_eq!(
            cookie_status(
                "http://www.acme.test",
                "http://api.acme.test/auth/login",
                line,
                "cookie-secure-scheme",
                BLOCKED
            ),
            Some(Status::Fail)
        );
        assert_eq!(
            cookie_status(
                "http://localhost:3000",
                "http://localhost:8000/auth/login",
                line,
                "cookie-secure-scheme",
                BLOCKED
            ),
            Some(Status::Pass)
        );
        assert_eq!(
            cookie_status(
                "http://127.0.0.1:3000",
                "http://127.0.0.1:8000/auth/login",
                line,
                "cookie-secure-scheme",
                BLOCKED
            ),
            Some(Status::Pass)
        );
        assert_eq!(
            cookie_status(
                "https://www.acme.test",
                "https://api.acme.test/auth/login",
                line,
                "cookie-secure-scheme",
                BLOCKED
            ),
            Some(Status::Pass)
        );
    }

    #[test]
    fn domain_must_domain_match_and_not_be_a_public_suffix() {
        let st = |api: &str, line: &str| {
            cookie_status("http://www.acme.test", api, line, "cookie-domain", BLOCKED)
        };
        assert_eq!(
            st(
                "http://api.acme.test/l",
                "sid=v; Path=/; Domain=www.acme.test"
            ),
            Some(Status::Fail)
        );
        assert_eq!(
            st("http://api.acme.test/l", "sid=v; Path=/; Domain=acme.test"),
            Some(Status::Pass)
        );
        assert_eq!(
            st("http://api.acme.test/l", "sid=v; Path=/; Domain=.acme.test"),
            Some(Status::Pass)
        );
        assert_eq!(
            st("http://api.acme.test/l", "sid=v; Path=/; Domain=test"),
            Some(Status::Fail)
        );
        assert_eq!(
            cookie_status(
                "http://localhost:3000",
                "http://localhost:8000/l",
                "sid=v; Domain=localhost; Path=/",
                "cookie-domain",
                BLOCKED
            ),
            Some(Status::Pass)
        );
        assert_eq!(
            cookie_status(
                "http://127.0.0.1:3000",
                "http://127.0.0.1:8000/l",
                "sid=v; Domain=localhost; Path=/",
                "cookie-domain",
                BLOCKED
            ),
            Some(Status::Fail)
        );
        assert_eq!(st("http://api.acme.test/l", "sid=v; Path=/"), None);
    }

    #[test]
    fn path_must_cover_the_later_calls() {
        assert!(path_matches("/", "/auth/me"));
        assert!(path_matches("/auth", "/auth/me"));
        assert!(path_matches("/auth/", "/auth/me"));
        assert!(!path_matches("/auth", "/authx"));
        assert!(!path_matches("/auth", "/api/auth/me"));
        assert_eq!(default_path("/auth/login"), "/auth");
        assert_eq!(default_path("/login"), "/");
        let fs = cookie(
            "http://www.acme.test",
            "http://www.acme.test/api/auth/login",
            "sid=v; Path=/auth",
        );
        let f = find(&fs, "cookie-sent-back")[0];
        assert_eq!(f.status, Status::Fail);
        assert!(f.summary.contains("NotOnPath"));
        assert!(f.fix.as_deref().is_some_and(|x| x.contains("rewrite Path")));
        let fs = cookie(
            "http://www.acme.test",
            "http://www.acme.test/api/auth/login",
            "sid=v; Path=/",
        );
        assert_eq!(find(&fs, "cookie-sent-back")[0].status, Status::Pass);
    }

    #[test]
    fn cookie_tossing_is_warned_where_the_host_prefix_cannot_be_used() {
        let o = |u: &str| Origin::parse(u).expect("origin");
        for (name, api) in [
            ("vestibule_session", "http://app.acme.test"),
            ("vestibule_session", "https://app.acme.test"),
            ("__Secure-vestibule_session", "https://app.acme.test"),
        ] {
            let f = cookie_tossing(name, &o(api)).expect("a warning");
            assert_eq!(f.status, Status::Warn);
            assert_eq!(f.rule, "cookie-tossing");
            assert!(f.fix.as_deref().is_some_and(|x| x.contains("__Host-")));
        }
        for (name, api) in [
            ("__Host-vestibule_session", "https://app.acme.test"),
            ("vestibule_session", "http://localhost:8000"),
            ("vestibule_session", "http://127.0.0.1:8000"),
        ] {
            assert_eq!(cookie_tossing(name, &o(api)), None, "{name} on {api}");
        }
        // Through the Set-Cookie rules: the Domain-scoped cookie gets the warning.
        let fs = cookie(
            "https://www.acme.test",
            "https://api.acme.test/auth/login",
            "__Secure-sid=v; Path=/; Secure; Domain=acme.test; SameSite=Lax",
        );
        assert_eq!(find(&fs, "cookie-tossing")[0].status, Status::Warn);
    }

    #[test]
    fn prefixes_are_enforced() {
        let st = |line: &str| {
            cookie_status(
                "https://www.acme.test",
                "https://api.acme.test/l",
                line,
                "cookie-prefix",
                BLOCKED,
            )
        };
        assert_eq!(st("__Host-sid=v; Path=/; Secure"), Some(Status::Pass));
        assert_eq!(st("__Host-sid=v; Path=/auth; Secure"), Some(Status::Fail));
        assert_eq!(
            st("__Host-sid=v; Path=/; Secure; Domain=acme.test"),
            Some(Status::Fail)
        );
        assert_eq!(st("__Host-sid=v; Path=/"), Some(Status::Fail));
        assert_eq!(st("__Secure-sid=v; Path=/; Secure"), Some(Status::Pass));
        assert_eq!(st("__Secure-sid=v; Path=/"), Some(Status::Fail));
    }

    #[test]
    fn third_party_cookies_per_family() {
        let page = "https://app.spa.test";
        let api = "https://api.acme.test/auth/login";
        let none = "sid=v; Path=/; Secure; SameSite=None";
        assert_eq!(
            cookie_status(page, api, none, "third-party-cookies", BLOCKED),
            Some(Status::Fail)
        );
        assert_eq!(
            cookie_status(
                page,
                api,
                none,
                "third-party-cookies",
                Family::ChromiumAllowed3pc
            ),
            Some(Status::Pass)
        );
        assert_eq!(
            cookie_status(page, api, none, "third-party-cookies", Family::Firefox),
            Some(Status::Warn)
        );
        assert_eq!(
            cookie_status(page, api, none, "third-party-cookies", Family::Safari),
            Some(Status::Fail)
        );
        let chips = "sid=v; Path=/; Secure; SameSite=None; Partitioned";
        assert_eq!(
            cookie_status(page, api, chips, "third-party-cookies", BLOCKED),
            Some(Status::Pass)
        );
        assert_eq!(
            cookie_status(page, api, chips, "third-party-cookies", Family::Safari),
            Some(Status::Fail)
        );
        // Same-site pairs are never affected.
        assert_eq!(
            cookie_status(
                "https://www.acme.test",
                api,
                none,
                "third-party-cookies",
                BLOCKED
            ),
            None
        );
    }

    #[test]
    fn partitioned_needs_a_secure_origin() {
        let line = "sid=v; Path=/; SameSite=None; Partitioned";
        assert_eq!(
            cookie_status(
                "http://www.spa.test",
                "http://api.acme.test/l",
                line,
                "cookie-partitioned",
                BLOCKED
            ),
            Some(Status::Fail)
        );
        let ok = "sid=v; Path=/; SameSite=None; Secure; Partitioned";
        assert_eq!(
            cookie_status(
                "https://www.spa.test",
                "https://api.acme.test/l",
                ok,
                "cookie-partitioned",
                BLOCKED
            ),
            None
        );
    }

    #[test]
    fn size_limit_is_4096() {
        let big = format!("sid={}; Path=/", "x".repeat(4100));
        assert_eq!(
            cookie_status(
                "http://localhost:3000",
                "http://localhost:8000/l",
                &big,
                "cookie-size",
                BLOCKED
            ),
            Some(Status::Fail)
        );
        assert_eq!(
            cookie_status(
                "http://localhost:3000",
                "http://localhost:8000/l",
                "sid=v",
                "cookie-size",
                BLOCKED
            ),
            Some(Status::Pass)
        );
    }

    #[test]
    fn garbage_and_removals() {
        assert_eq!(
            cookie_status(
                "http://localhost:3000",
                "http://localhost:8000/l",
                "novalue",
                "cookie-parse",
                BLOCKED
            ),
            Some(Status::Fail)
        );
        let fs = cookie(
            "http://localhost:3000",
            "http://127.0.0.1:8000/l",
            "sid=; Max-Age=0; Path=/",
        );
        assert!(fs.iter().all(|f| f.status == Status::Pass), "{fs:#?}");
    }

    fn exchange(page: &str, api: &str, credentials: Credentials, response: Observed) -> Exchange {
        Exchange {
            page: o(page),
            api: u(api),
            method: "POST".into(),
            request_headers: json_post(),
            credentials,
            preflight: Some(obs(
                204,
                &[
                    ("access-control-allow-origin", page),
                    ("access-control-allow-credentials", "true"),
                    ("access-control-allow-headers", "content-type"),
                ],
            )),
            response: Some(response),
            later: u(api),
            followup: None,
            server: ServerKind::Unknown,
            login_given: false,
        }
    }

    #[test]
    fn diagnose_localhost_ports_work_with_include_and_fail_without() {
        let resp = obs(
            200,
            &[
                ("access-control-allow-origin", "http://localhost:3000"),
                ("access-control-allow-credentials", "true"),
                ("vary", "Origin"),
                ("set-cookie", "sid=v; Path=/; HttpOnly; SameSite=Lax"),
            ],
        );
        let d = diagnose(&exchange(
            "http://localhost:3000",
            "http://localhost:8000/auth/login",
            Credentials::Include,
            resp.clone(),
        ));
        assert!(d.all_work(), "{d:#?}");
        let d = diagnose(&exchange(
            "http://localhost:3000",
            "http://localhost:8000/auth/login",
            Credentials::SameOrigin,
            resp,
        ));
        assert!(!d.all_work());
        assert_eq!(d.findings[0].rule, "credentials-mode", "failures first");
        assert!(d.verdicts.iter().all(|v| v.status == Status::Fail));
    }

    #[test]
    fn diagnose_chips_splits_the_families() {
        let resp = obs(
            200,
            &[
                ("access-control-allow-origin", "https://app.spa.test"),
                ("access-control-allow-credentials", "true"),
                ("vary", "Origin"),
                (
                    "set-cookie",
                    "sid=v; Path=/; HttpOnly; Secure; SameSite=None; Partitioned",
                ),
            ],
        );
        let d = diagnose(&exchange(
            "https://app.spa.test",
            "https://api.acme.test/auth/login",
            Credentials::Include,
            resp,
        ));
        let v: Vec<Status> = d.verdicts.iter().map(|v| v.status).collect();
        assert_eq!(v, [Status::Pass, Status::Pass, Status::Pass, Status::Fail]);
    }

    #[test]
    fn quoted_bodies_cut_mid_string_end_with_an_ellipsis() {
        assert_eq!(
            quote_body(b"{\"code\":\"x\"}", 300).as_deref(),
            Some("{\"code\":\"x\"}")
        );
        assert_eq!(
            quote_body(b"abcdef", 6).as_deref(),
            Some("abcdef"),
            "fits: no ellipsis"
        );
        assert_eq!(quote_body(b"abcdefg", 6).as_deref(), Some("abcdef…"));
        // A character split by the cut is dropped, not shown as U+FFFD.
        let e = "ab\u{e9}".as_bytes();
        assert_eq!(quote_body(&[e, b"z"].concat(), 3).as_deref(), Some("ab…"));
        assert_eq!(quote_body(b"a\r\nb", 300).as_deref(), Some("a  b"));
        assert_eq!(quote_body(b"  ", 300), None);
    }

    #[test]
    fn a_vestibule_server_is_recognised_by_its_answers_only() {
        let realm = obs(401, &[("www-authenticate", "Bearer realm=\"vestibule\"")]);
        assert_eq!(ServerKind::recognise([&realm]), ServerKind::Vestibule);
        let cookie = obs(200, &[("set-cookie", "__Host-vestibule_session=x; Path=/")]);
        assert_eq!(ServerKind::recognise([&cookie]), ServerKind::Vestibule);
        let mut problem = obs(403, &[]);
        problem.error_body =
            Some(r#"{"code":"csrf_origin_untrusted","message":"m","hint":"h"}"#.into());
        assert_eq!(ServerKind::recognise([&problem]), ServerKind::Vestibule);
        // Django's CSRF page, another framework's JSON, another realm: not Vestibule.
        let mut django = obs(403, &[("set-cookie", "csrftoken=x; Path=/")]);
        django.error_body = Some("<h1>Forbidden (403)</h1> CSRF verification failed".into());
        let mut other = obs(403, &[]);
        other.error_body = Some(r#"{"code":"forbidden","message":"m","hint":"h"}"#.into());
        let basic = obs(401, &[("www-authenticate", "Basic realm=\"api\"")]);
        assert_eq!(
            ServerKind::recognise([&django, &other, &basic]),
            ServerKind::Unknown
        );
    }

    #[test]
    fn a_vestibule_csrf_refusal_names_its_keys_and_no_framework() {
        let api = u("http://localhost:8000/auth/login");
        let mut refused = obs(403, &[]);
        refused.error_body =
            Some(r#"{"code":"csrf_origin_untrusted","message":"m","hint":"h"}"#.into());
        let f = response_status("POST", &api, &refused, ServerKind::Vestibule);
        assert!(f.summary.contains("csrf_origin_untrusted"), "{f:?}");
        let fix = f.fix.unwrap_or_default();
        assert!(
            fix.contains("spa_origins") && !fix.contains("Django"),
            "{fix}"
        );
        let f = response_status("POST", &api, &refused, ServerKind::Unknown);
        assert!(f.fix.unwrap_or_default().contains("CSRF_TRUSTED_ORIGINS"));
    }

    #[test]
    fn a_refusal_after_a_real_login_does_not_advise_logging_in() {
        let no_cookie = |status: u16, login_given: bool| {
            let mut ex = exchange(
                "http://localhost:3000",
                "http://localhost:8000/auth/login",
                Credentials::Include,
                obs(
                    status,
                    &[
                        ("access-control-allow-origin", "http://localhost:3000"),
                        ("access-control-allow-credentials", "true"),
                    ],
                ),
            );
            ex.login_given = login_given;
            let d = diagnose(&ex);
            d.findings
                .into_iter()
                .find(|f| f.rule == "set-cookie")
                .map(|f| f.summary)
                .unwrap_or_default()
        };
        for (status, given) in [(403, true), (403, false), (200, true)] {
            let said = no_cookie(status, given);
            assert!(!said.contains("--username"), "{status} {given}: {said}");
        }
        assert!(no_cookie(200, false).contains("--username U --password-stdin"));
    }
}
