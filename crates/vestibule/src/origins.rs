//! One browser-origins policy instead of four lists.
//!
//! The operator declares the API's public origin and the SPA origins once; everything a browser
//! cares about is derived from them: the CORS allowlist, the CSRF trusted origins and the session
//! cookie's `SameSite`, `Secure` and `Partitioned` attributes. The rules applied are the measured
//! ones of `browser-cookie-rules.md` (cited as "rule N" in messages).
//!
//! - [`OriginPattern`]: an exact origin or an anchored `scheme://*.suffix[:port]` wildcard.
//! - [`Site`] and [`site_of`]: schemeful same-site (scheme + registrable domain, ports ignored),
//!   with the registrable domain taken from the Public Suffix List.
//! - [`OriginsPolicy`]: the validated policy, its derived cookie attributes and the verdicts the
//!   debug endpoint (`server::debug`) reports.

use std::fmt;

use cookie::SameSite;
use serde::Serialize;

use crate::origin::Origin;
use crate::problem::Problem;

/// Why a configured origin or origin pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an origin or origin pattern: {reason}")]
pub struct PatternError {
    input: String,
    reason: String,
}

impl PatternError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }

    /// What is wrong, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// An allowed browser origin as configured: exact, or every subdomain of a domain.
///
/// Wildcards are anchored (unlike django-cors-headers' regexes): `https://*.acme.com` matches
/// `https://a.acme.com` and `https://a.b.acme.com`, never `https://acme.com`, another scheme,
/// another port, `https://evilacme.com` or `https://a.acme.com.evil.test`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginPattern(Kind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Exact(Origin),
    Subdomains {
        scheme: String,
        /// Lower-case, IDNA-encoded, without the leading dot.
        suffix: String,
        port: u16,
    },
}

impl OriginPattern {
    /// Parses a configured origin (`https://www.acme.com`, `http://localhost:3000`) or pattern
    /// (`https://*.preview.acme.com`, `https://*.acme.com:8443`).
    ///
    /// # Errors
    /// [`PatternError`] for `*`, `null`, a missing or non-http(s) scheme, a path, query,
    /// fragment, trailing slash or user info, a wildcard that is not the whole first label, and
    /// a wildcard directly over a public suffix (`https://*.vercel.app`, `https://*.com`).
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError::new(input, reason);
        if input.trim() == "*" {
            return Err(err(
                "`*` would let every site read the API's answers; browsers refuse it with credentials (cookies) and Vestibule never allows it: list the SPA origins, or patterns like https://*.acme.com",
            ));
        }
        if !input.contains('*') {
            return Origin::parse_config(input)
                .map(|o| Self(Kind::Exact(o)))
                .map_err(|e| err(e.reason()));
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(err(
                "missing scheme: write https://*.acme.com (http or https, as the browser sends it)",
            ));
        };
        let wildcard_place = "a wildcard is allowed only as the whole first label of the host, as in https://*.acme.com";
        let Some(after) = rest.strip_prefix("*.") else {
            return Err(err(wildcard_place));
        };
        if after.contains('*') {
            return Err(err(wildcard_place));
        }
        // Validate everything after the wildcard with a placeholder label in its place.
        let probe =
            Origin::parse_config(&format!("{scheme}://x.{after}")).map_err(|e| err(e.reason()))?;
        if probe.is_ip() {
            return Err(err("a wildcard needs a domain name after `*.`"));
        }
        let Some(suffix) = probe.host().strip_prefix("x.") else {
            return Err(err(wildcard_place));
        };
        if is_public_suffix(suffix) {
            return Err(PatternError::new(
                input,
                format!(
                    "*.{suffix} spans every site under the public suffix {suffix:?} (each name under it belongs to someone else, like *.vercel.app or *.fly.dev); list your own origins instead"
                ),
            ));
        }
        Ok(Self(Kind::Subdomains {
            scheme: probe.scheme().to_owned(),
            suffix: suffix.to_owned(),
            port: probe.port(),
        }))
    }

    /// Whether `origin` is allowed by this pattern.
    pub fn matches(&self, origin: &Origin) -> bool {
        match &self.0 {
            Kind::Exact(o) => o == origin,
            Kind::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                origin.scheme() == scheme
                    && origin.port() == *port
                    && !origin.is_ip()
                    && origin
                        .host()
                        .strip_suffix(suffix.as_str())
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|labels| !labels.is_empty() && !labels.ends_with('.'))
            }
        }
    }

    /// The exact origin, when this is not a wildcard.
    pub fn as_origin(&self) -> Option<&Origin> {
        match &self.0 {
            Kind::Exact(o) => Some(o),
            Kind::Subdomains { .. } => None,
        }
    }

    /// Whether this is a `*.` pattern.
    pub fn is_wildcard(&self) -> bool {
        matches!(self.0, Kind::Subdomains { .. })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        match &self.0 {
            Kind::Exact(o) => o.scheme(),
            Kind::Subdomains { scheme, .. } => scheme,
        }
    }

    /// The site every matching origin belongs to (a wildcard never spans a public suffix, so
    /// all its matches share the suffix's registrable domain).
    pub fn site(&self) -> Site {
        match &self.0 {
            Kind::Exact(o) => site_of(o),
            Kind::Subdomains { scheme, suffix, .. } => Site {
                scheme: scheme.clone(),
                domain: registrable_domain(suffix).to_owned(),
            },
        }
    }

    /// Whether the host is a loopback name (`localhost`, `*.localhost`).
    fn is_localhost_name(&self) -> bool {
        self.as_origin().is_some_and(is_localhost_name)
    }

    /// Whether the host is a loopback IP address (`127.0.0.1`, `[::1]`).
    fn is_loopback_ip(&self) -> bool {
        self.as_origin().is_some_and(is_loopback_ip)
    }
}

impl From<Origin> for OriginPattern {
    fn from(origin: Origin) -> Self {
        Self(Kind::Exact(origin))
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Exact(o) => o.fmt(f),
            Kind::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let default = matches!((scheme.as_str(), port), ("http", 80) | ("https", 443));
                if default {
                    write!(f, "{scheme}://*.{suffix}")
                } else {
                    write!(f, "{scheme}://*.{suffix}:{port}")
                }
            }
        }
    }
}

/// Parses a configured list, naming each bad entry by its key (`spa_origins[2]`).
pub fn parse_patterns(key: &str, items: &[String]) -> (Vec<OriginPattern>, Vec<Problem>) {
    let mut patterns = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match OriginPattern::parse(item) {
            Ok(p) => patterns.push(p),
            Err(e) => problems.push(Problem {
                key: format!("{key}[{i}]"),
                message: format!(
                    "{:?}: {}; write scheme://host[:port] (e.g. https://www.acme.com, http://localhost:3000) or https://*.acme.com",
                    item,
                    e.reason()
                ),
            }),
        }
    }
    (patterns, problems)
}

/// A schemeful site: scheme + registrable domain. Browsers decide `SameSite` by it (rule 4);
/// ports never matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Site {
    scheme: String,
    domain: String,
}

impl Site {
    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The registrable domain (or the host itself for IP addresses, `localhost` and public
    /// suffixes).
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.domain)
    }
}

/// The site of an origin: `https://www.acme.com:8443` → `https://acme.com`;
/// `http://localhost:3000` → `http://localhost`; `http://127.0.0.1:3000` → `http://127.0.0.1`.
pub fn site_of(origin: &Origin) -> Site {
    let domain = if origin.is_ip() {
        origin.host()
    } else {
        registrable_domain(origin.host())
    };
    Site {
        scheme: origin.scheme().to_owned(),
        domain: domain.to_owned(),
    }
}

/// The registrable domain of a host name by the Public Suffix List; the name itself when it is
/// `localhost`, a public suffix or otherwise has none.
fn registrable_domain(host: &str) -> &str {
    if host == "localhost" {
        return host;
    }
    psl::domain_str(host).unwrap_or(host)
}

/// Whether `name` is itself a public suffix (`com`, `co.uk`, `vercel.app`, `fly.dev`, and any
/// bare top-level name such as `test` or `localhost`).
pub fn is_public_suffix(name: &str) -> bool {
    psl::suffix_str(name) == Some(name)
}

fn is_localhost_name(o: &Origin) -> bool {
    o.host() == "localhost" || o.host().ends_with(".localhost")
}

fn is_loopback_ip(o: &Origin) -> bool {
    o.is_ip() && o.is_loopback()
}

/// How a request's origin relates to the API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// Same scheme, host and port: cookies flow with default fetch settings.
    SameOrigin,
    /// Same scheme and registrable domain: `SameSite=Lax` cookies flow with `credentials: 'include'`.
    SameSite,
    /// Another site: only `SameSite=None; Secure` cookies can flow, and third-party cookie
    /// blocking drops those unless `Partitioned`.
    CrossSite,
}

/// Explicit cookie settings that override what the policy derives.
#[derive(Debug, Clone, Default)]
pub struct CookieOverrides {
    /// `session.cookie_domain`: shares the cookie with sibling subdomains. Validated: must
    /// domain-match the API host and must not be a public suffix.
    pub domain: Option<String>,
    /// `session.same_site`.
    pub same_site: Option<SameSite>,
}

/// The session cookie attributes derived from the origins (and overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttributes {
    /// `Secure`: over https, and on loopback when `SameSite=None` needs it (rules 5/6).
    pub secure: bool,
    /// `Lax` unless an SPA origin is cross-site with the API (then `None`) or overridden.
    pub same_site: SameSite,
    /// `Partitioned` (CHIPS) whenever `SameSite=None`: the only cross-site cookie that survives
    /// third-party cookie blocking (rules 7/8).
    pub partitioned: bool,
    /// `Domain`; `None` (host-only) unless explicitly configured.
    pub domain: Option<String>,
}

/// The validated origins policy: who may read answers (CORS), who may write with the cookie
/// (CSRF), and how the cookie must look for the SPAs to receive it.
#[derive(Debug, Clone)]
pub struct OriginsPolicy {
    public_origin: Origin,
    api_site: Site,
    spa_origins: Vec<OriginPattern>,
    csrf_extra: Vec<OriginPattern>,
    cookie: CookieAttributes,
    cookie_name: String,
}

/// A configured pattern with the key it came from, for messages.
struct Entry<'a> {
    key: &'a str,
    pattern: &'a OriginPattern,
}

impl OriginsPolicy {
    /// Builds and validates the policy for an API reachable at `public_origin`, called by
    /// `spa_origins`, with `csrf_trusted_origins` as extra origins trusted for writes only.
    ///
    /// Returns the policy and the warnings worth saying at start-up.
    ///
    /// # Errors
    /// Every problem, keyed as in `vestibule.toml`: `localhost` mixed with `127.0.0.1`, an https
    /// origin calling a plain-http API (mixed content), a cross-site SPA over plain http on a
    /// non-loopback host, `SameSite=None` without a possible `Secure`, a cookie `Domain` that
    /// does not cover the API host or is a public suffix.
    pub fn new(
        public_origin: Origin,
        spa_origins: Vec<OriginPattern>,
        csrf_trusted_origins: Vec<OriginPattern>,
        overrides: CookieOverrides,
    ) -> Result<(Self, Vec<String>), Vec<Problem>> {
        let keyed = |name: &str, list: Vec<OriginPattern>| {
            list.into_iter()
                .enumerate()
                .map(|(i, p)| (format!("{name}[{i}]"), p))
                .collect::<Vec<_>>()
        };
        Self::new_keyed(
            public_origin,
            keyed("spa_origins", spa_origins),
            keyed("csrf.trusted_origins", csrf_trusted_origins),
            overrides,
        )
    }

    /// [`Self::new`] with each pattern's configuration key given, so problems keep the right
    /// index even when other entries of the list failed to parse.
    pub(crate) fn new_keyed(
        public_origin: Origin,
        spa_origins: Vec<(String, OriginPattern)>,
        csrf_trusted_origins: Vec<(String, OriginPattern)>,
        overrides: CookieOverrides,
    ) -> Result<(Self, Vec<String>), Vec<Problem>> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_owned(),
                message,
            });
        };
        let api = &public_origin;
        let api_site = site_of(api);
        let spa: Vec<Entry<'_>> = spa_origins
            .iter()
            .map(|(key, pattern)| Entry { key, pattern })
            .collect();
        let extra: Vec<Entry<'_>> = csrf_trusted_origins
            .iter()
            .map(|(key, pattern)| Entry { key, pattern })
            .collect();

        // Rule 4: localhost and 127.0.0.1 are different sites. The first loopback entry
        // (public_url first) sets the name; every entry using the other one is refused.
        let loopback_kind = |p: &OriginPattern| {
            if p.is_localhost_name() {
                Some(true)
            } else if p.is_loopback_ip() {
                Some(false)
            } else {
                None
            }
        };
        let api_pattern = OriginPattern::from(api.clone());
        let reference = loopback_kind(&api_pattern)
            .map(|named| (named, format!("public_url {api}")))
            .or_else(|| {
                spa.iter().find_map(|e| {
                    loopback_kind(e.pattern)
                        .map(|named| (named, format!("{} {}", e.key, e.pattern)))
                })
            });
        let mut mixed_loopback = Vec::new();
        if let Some((named, reference)) = reference {
            for e in &spa {
                if loopback_kind(e.pattern) == Some(!named) {
                    mixed_loopback.push(e.key);
                    problem(
                        e.key,
                        format!(
                            "{} mixes localhost and 127.0.0.1 with {reference}: they are different sites to a browser (rule 4), so the session cookie set for one is never sent from the other; use the same name everywhere (public_url defaults to http://localhost:<port>)",
                            e.pattern,
                        ),
                    );
                }
            }
        }

        // Rule 12: an https page cannot call a plain-http API.
        let mut mixed_content = Vec::new();
        for e in spa.iter().chain(&extra) {
            if e.pattern.scheme() == "https" && api.scheme() == "http" {
                mixed_content.push(e.key);
                problem(
                    e.key,
                    format!(
                        "{} is https but public_url {api} is plain http: browsers block the calls as mixed content before they reach the server (rule 12); serve the API over https",
                        e.pattern
                    ),
                );
            } else if e.pattern.scheme() == "http" && api.scheme() == "https" {
                warnings.push(format!(
                    "{} = {} is plain http while public_url is https: it is another site (schemeful same-site, rule 4) and not a secure context; acceptable in a development profile, never in production",
                    e.key, e.pattern
                ));
            }
            if e.pattern.as_origin() == Some(api) {
                warnings.push(format!(
                    "{} = {} is this server's own origin, which is always trusted; the entry is unnecessary",
                    e.key, e.pattern
                ));
            }
        }

        // Cross-site SPAs decide SameSite.
        let cross: Vec<&Entry<'_>> = spa
            .iter()
            .filter(|e| !mixed_loopback.contains(&e.key) && !mixed_content.contains(&e.key))
            .filter(|e| e.pattern.site() != api_site)
            .collect();
        let https = api.scheme() == "https";
        // Browsers accept Secure from https and from http://localhost / 127.0.0.1 (rule 6).
        let secure_possible = https || api.is_loopback();
        let same_site = match overrides.same_site {
            Some(s) => {
                if s == SameSite::None && !secure_possible {
                    problem(
                        "session.same_site",
                        format!(
                            "none needs Secure (rule 5), and browsers refuse Secure cookies from plain http on a non-loopback host like {api} (rule 6); serve the API over https, or use lax with a same-origin proxy or bearer tokens"
                        ),
                    );
                }
                if s != SameSite::None {
                    for e in &cross {
                        warnings.push(format!(
                            "session.same_site = {}: the session cookie is never sent from cross-site {} = {} (rule 4); that SPA must use bearer tokens or a same-origin proxy",
                            same_site_name(s),
                            e.key,
                            e.pattern
                        ));
                    }
                }
                if s == SameSite::Strict {
                    warnings.push("session.same_site = strict: the first navigation from an e-mail link or an SSO redirect arrives without the session cookie; lax is the safe default".into());
                }
                s
            }
            None if cross.is_empty() => SameSite::Lax,
            None if secure_possible => SameSite::None,
            None => {
                for e in &cross {
                    problem(
                        e.key,
                        format!(
                            "{} is cross-site with public_url {api} ({} vs {api_site}): a cross-site session cookie needs SameSite=None; Secure (rules 4/5), and browsers refuse Secure from plain http on a non-loopback host (rule 6); serve both over https, put the API behind a same-origin proxy, use bearer tokens for this SPA, or set session.same_site = \"lax\" to accept that the cookie is not sent from it",
                            e.pattern,
                            e.pattern.site()
                        ),
                    );
                }
                SameSite::Lax
            }
        };
        if same_site == SameSite::None && overrides.same_site.is_none() {
            for e in &cross {
                warnings.push(format!(
                    "{} = {} is cross-site with public_url {api} ({} vs {api_site}): browsers that block third-party cookies (Chrome's default in the measured build, Safari) drop an ordinary session cookie (rule 7), so the cookie is SameSite=None; Secure; Partitioned (CHIPS, rule 8: per-SPA-site, measured in Chromium only; Safari and Firefox were not measured). Prefer same-site hosting, a same-origin proxy, or bearer tokens",
                    e.key,
                    e.pattern,
                    e.pattern.site()
                ));
            }
        }
        let partitioned = same_site == SameSite::None;
        let secure = https || (same_site == SameSite::None && secure_possible);
        if secure && !https {
            warnings.push(format!(
                "the session cookie is SameSite=None; Secure; Partitioned on plain-http loopback {api}: browsers accept Secure from localhost (rule 6), but not from any other plain-http host"
            ));
        }

        let mut domain = None;
        if let Some(raw) = &overrides.domain {
            let key = "session.cookie_domain";
            let d = raw.trim().trim_start_matches('.').to_ascii_lowercase();
            let host = api.host();
            if d.is_empty() {
                problem(key, "is empty; remove it for a host-only cookie".into());
            } else if api.is_ip() {
                problem(
                    key,
                    format!(
                        "public_url {api} is an IP address, which cannot share cookies with other hosts; remove session.cookie_domain"
                    ),
                );
            } else if d == "localhost" {
                problem(
                    key,
                    "Domain=localhost does nothing (browsers make it host-only, rule 10) and rules out the __Host- prefix; remove it".into(),
                );
            } else if is_public_suffix(&d) {
                problem(
                    key,
                    format!(
                        "{d:?} is a public suffix: every site under it is someone else's, and browsers refuse such a Domain (rule 9); use your registrable domain (e.g. acme.com), or leave it unset for a host-only cookie"
                    ),
                );
            } else if !(host == d || host.ends_with(&format!(".{d}"))) {
                problem(
                    key,
                    format!(
                        "{d:?} does not cover the API host {host}: browsers refuse a Domain that does not domain-match the responding host (rule 9)"
                    ),
                );
            } else {
                warnings.push(format!("session.cookie_domain = {d}: the cookie is shared with every subdomain of {d}, and the __Host- prefix cannot be used; needed only when a sibling host must itself receive the cookie"));
                domain = Some(d);
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok((
            Self {
                api_site,
                public_origin,
                spa_origins: spa_origins.into_iter().map(|(_, p)| p).collect(),
                csrf_extra: csrf_trusted_origins.into_iter().map(|(_, p)| p).collect(),
                cookie: CookieAttributes {
                    secure,
                    same_site,
                    partitioned,
                    domain,
                },
                cookie_name: crate::session::DEFAULT_COOKIE_NAME.to_owned(),
            },
            warnings,
        ))
    }

    /// Records the session cookie's full name (with any prefix), so the debug endpoint can tell
    /// whether it arrived.
    #[must_use]
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// This server's public origin.
    pub fn public_origin(&self) -> &Origin {
        &self.public_origin
    }

    /// The API's site.
    pub fn api_site(&self) -> &Site {
        &self.api_site
    }

    /// The configured SPA origins.
    pub fn spa_origins(&self) -> &[OriginPattern] {
        &self.spa_origins
    }

    /// Whether `origin` is one of the SPA origins.
    pub fn is_allowed_spa(&self, origin: &Origin) -> bool {
        self.spa_origins.iter().any(|p| p.matches(origin))
    }

    /// The CORS allowlist: this server's own origin (so same-origin writes, which carry
    /// `Origin`, are not logged as refusals) and the SPA origins.
    pub fn cors_allowed_origins(&self) -> Vec<OriginPattern> {
        let mut list = vec![OriginPattern::from(self.public_origin.clone())];
        for p in &self.spa_origins {
            if !list.contains(p) {
                list.push(p.clone());
            }
        }
        list
    }

    /// Whether CORS lets `origin` read answers (see [`Self::cors_allowed_origins`]).
    pub fn is_cors_allowed(&self, origin: &Origin) -> bool {
        *origin == self.public_origin || self.is_allowed_spa(origin)
    }

    /// The CSRF trusted origins besides this server's own: the SPA origins, then the extra
    /// `csrf.trusted_origins`.
    pub fn csrf_trusted_origins(&self) -> Vec<OriginPattern> {
        let mut list: Vec<OriginPattern> = Vec::new();
        for p in self.spa_origins.iter().chain(&self.csrf_extra) {
            if !list.contains(p) {
                list.push(p.clone());
            }
        }
        list
    }

    /// Whether `origin` may make cookie-authenticated writes.
    pub fn is_csrf_trusted(&self, origin: &Origin) -> bool {
        *origin == self.public_origin
            || self
                .spa_origins
                .iter()
                .chain(&self.csrf_extra)
                .any(|p| p.matches(origin))
    }

    /// The derived session cookie attributes.
    pub fn cookie(&self) -> &CookieAttributes {
        &self.cookie
    }

    /// The session cookie's full name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// How `origin` relates to this server's origin.
    pub fn relation(&self, origin: &Origin) -> Relation {
        if *origin == self.public_origin {
            Relation::SameOrigin
        } else if site_of(origin) == self.api_site {
            Relation::SameSite
        } else {
            Relation::CrossSite
        }
    }

    /// Which browser rule, if any, keeps the session cookie away from a request made by a page
    /// at `origin` (`None`: no `Origin` header), in one sentence.
    pub fn cookie_verdict(&self, origin: Option<&Origin>) -> String {
        let Some(origin) = origin else {
            return "no Origin header: a same-origin GET or navigation, or not a browser; nothing here drops the cookie".into();
        };
        let api = &self.public_origin;
        if origin.scheme() == "https" && api.scheme() == "http" {
            return format!(
                "an https page cannot call this plain-http API: browsers block it as mixed content (rule 12); serve {api} over https"
            );
        }
        let c = &self.cookie;
        match self.relation(origin) {
            Relation::SameOrigin => {
                "same origin: the cookie is sent with default fetch settings".into()
            }
            Relation::SameSite => "same-site, cross-origin: the cookie is sent only when the page uses credentials: 'include' (fetch) or withCredentials (XHR, axios) on every call (rule 1)".into(),
            Relation::CrossSite => {
                let loopback_mix = (is_localhost_name(origin) && is_loopback_ip(api))
                    || (is_loopback_ip(origin) && is_localhost_name(api));
                let why = if loopback_mix {
                    "localhost and 127.0.0.1 are different sites (rule 4)"
                } else {
                    "cross-site"
                };
                match c.same_site {
                    SameSite::None if c.partitioned && c.secure => format!(
                        "{why}: only the SameSite=None; Secure; Partitioned cookie set while this page's site was the top-level site is sent (CHIPS, rule 8; measured in Chromium only), and only with credentials: 'include' (rule 1)"
                    ),
                    SameSite::None if c.secure => format!(
                        "{why} and SameSite=None without Partitioned: browsers that block third-party cookies drop it (rule 7)"
                    ),
                    SameSite::None => format!(
                        "{why} and SameSite=None without Secure: browsers drop the cookie (rule 5)"
                    ),
                    other => format!(
                        "{why} and SameSite={}: the cookie is not sent (rule 4)",
                        same_site_title(other)
                    ),
                }
            }
        }
    }
}

fn same_site_name(s: SameSite) -> &'static str {
    match s {
        SameSite::Strict => "strict",
        SameSite::Lax => "lax",
        SameSite::None => "none",
    }
}

pub(crate) fn same_site_title(s: SameSite) -> &'static str {
    match s {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    }
}

/// Parses a `session.same_site` value (`lax`, `strict`, `none`; any case).
pub fn parse_same_site(value: &str) -> Option<SameSite> {
    match value.trim().to_ascii_lowercase().as_str() {
        "lax" => Some(SameSite::Lax),
        "strict" => Some(SameSite::Strict),
        "none" => Some(SameSite::None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).expect("origin")
    }

    fn pattern(s: &str) -> OriginPattern {
        OriginPattern::parse(s).expect("pattern")
    }

    #[test]
    fn patterns_parse_and_refuse_with_reasons() {
        for ok in [
            "https://www.acme.com",
            "http://localhost:3000",
            "https://*.acme.com",
            "https://*.preview.acme.com",
            "https://*.acme.com:8443",
            "http://*.acme.test",
            "https://*.myapp.vercel.app",
        ] {
            assert!(OriginPattern::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("*", "every site"),
            (" * ", "every site"),
            ("null", "never be trusted"),
            ("https://www.acme.com/", "trailing /"),
            ("https://www.acme.com/app", "path"),
            ("https://www.acme.com?x=1", "query"),
            ("https://www.acme.com#x", "fragment"),
            ("https://u:p@www.acme.com", "user info"),
            ("www.acme.com", "missing scheme"),
            ("*.acme.com", "missing scheme"),
            ("ftp://x.acme.com", "http and https"),
            ("ftp://*.acme.com", "http and https"),
            ("https://a.*.acme.com", "first label"),
            ("https://*acme.com", "first label"),
            ("https://*.*.acme.com", "first label"),
            ("https://acme.*", "first label"),
            ("https://*.acme.com/", "trailing /"),
            ("https://*.vercel.app", "public suffix"),
            ("https://*.fly.dev", "public suffix"),
            ("https://*.com", "public suffix"),
            ("https://*.co.uk", "public suffix"),
            ("https://*.github.io", "public suffix"),
            ("http://*.localhost", "public suffix"),
            ("http://*.0.0.1", "not a URL"),
        ] {
            let e = OriginPattern::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn wildcards_are_anchored() {
        let p = pattern("https://*.acme.com");
        for (o, expected) in [
            ("https://a.acme.com", true),
            ("https://a.b.acme.com", true),
            ("https://A.ACME.com", true),
            ("https://a.acme.com:443", true),
            ("https://acme.com", false),
            ("http://a.acme.com", false),
            ("https://a.acme.com:8443", false),
            ("https://evilacme.com", false),
            ("https://a.evilacme.com", false),
            ("https://a.acme.com.evil.test", false),
            ("https://acme.com.evil.test", false),
        ] {
            assert_eq!(p.matches(&origin(o)), expected, "{o}");
        }
        let port = pattern("https://*.acme.com:8443");
        assert!(port.matches(&origin("https://a.acme.com:8443")));
        assert!(!port.matches(&origin("https://a.acme.com")));
        let exact = pattern("http://localhost:3000");
        assert!(exact.matches(&origin("http://localhost:3000")));
        assert!(!exact.matches(&origin("http://localhost:3001")));
        assert!(!exact.matches(&origin("http://127.0.0.1:3000")));
    }

    #[test]
    fn patterns_display_as_written() {
        assert_eq!(
            pattern("HTTPS://*.Acme.com:443").to_string(),
            "https://*.acme.com"
        );
        assert_eq!(
            pattern("https://*.acme.com:8443").to_string(),
            "https://*.acme.com:8443"
        );
        assert_eq!(
            pattern("http://localhost:3000").to_string(),
            "http://localhost:3000"
        );
    }

    #[test]
    fn sites_are_schemeful_and_portless() {
        for (a, b, same) in [
            ("http://localhost:3000", "http://localhost:8000", true),
            ("http://127.0.0.1:3000", "http://127.0.0.1:8000", true),
            ("https://www.acme.com", "https://api.acme.com", true),
            ("https://www.acme.co.uk", "https://api.acme.co.uk", true),
            ("http://www.acme.test", "http://api.acme.test", true),
            ("http://localhost:3000", "http://127.0.0.1:8000", false),
            ("http://www.acme.com", "https://api.acme.com", false),
            ("https://acme.test", "https://evil.test", false),
            ("https://a.vercel.app", "https://b.vercel.app", false),
            ("https://a.fly.dev", "https://b.fly.dev", false),
        ] {
            assert_eq!(site_of(&origin(a)) == site_of(&origin(b)), same, "{a} {b}");
        }
        assert_eq!(
            site_of(&origin("https://www.acme.com:8443")).to_string(),
            "https://acme.com"
        );
        assert_eq!(
            pattern("https://*.preview.acme.com").site().to_string(),
            "https://acme.com"
        );
    }

    fn policy(
        public: &str,
        spa: &[&str],
        overrides: CookieOverrides,
    ) -> Result<(OriginsPolicy, Vec<String>), Vec<Problem>> {
        OriginsPolicy::new(
            origin(public),
            spa.iter().map(|s| pattern(s)).collect(),
            vec![],
            overrides,
        )
    }

    #[test]
    fn cookie_attributes_are_derived_from_the_origins() {
        struct Case {
            public: &'static str,
            spa: &'static [&'static str],
            secure: bool,
            same_site: SameSite,
            partitioned: bool,
            warns: Option<&'static str>,
        }
        for c in [
            Case {
                public: "https://api.acme.com",
                spa: &[],
                secure: true,
                same_site: SameSite::Lax,
                partitioned: false,
                warns: None,
            },
            Case {
                public: "https://api.acme.com",
                spa: &["https://www.acme.com", "https://*.preview.acme.com"],
                secure: true,
                same_site: SameSite::Lax,
                partitioned: false,
                warns: None,
            },
            Case {
                public: "http://localhost:8000",
                spa: &["http://localhost:3000"],
                secure: false,
                same_site: SameSite::Lax,
                partitioned: false,
                warns: None,
            },
            Case {
                public: "https://api.acme.com",
                spa: &["https://app.other.com"],
                secure: true,
                same_site: SameSite::None,
                partitioned: true,
                warns: Some("Partitioned"),
            },
            Case {
                public: "https://api.acme.com",
                spa: &["https://myapp.vercel.app"],
                secure: true,
                same_site: SameSite::None,
                partitioned: true,
                warns: Some("cross-site"),
            },
            Case {
                public: "http://localhost:8000",
                spa: &["http://www.acme.test"],
                secure: true,
                same_site: SameSite::None,
                partitioned: true,
                warns: Some("rule 6"),
            },
            Case {
                public: "https://api.acme.com",
                spa: &["http://localhost:3000"],
                secure: true,
                same_site: SameSite::None,
                partitioned: true,
                warns: Some("plain http while public_url is https"),
            },
        ] {
            let (p, warnings) = policy(c.public, c.spa, CookieOverrides::default())
                .unwrap_or_else(|e| panic!("{} {:?}: {e:?}", c.public, c.spa));
            let a = p.cookie();
            assert_eq!(
                (a.secure, a.same_site, a.partitioned, a.domain.clone()),
                (c.secure, c.same_site, c.partitioned, None),
                "{} {:?}",
                c.public,
                c.spa
            );
            match c.warns {
                Some(w) => assert!(warnings.iter().any(|x| x.contains(w)), "{w}: {warnings:?}"),
                None => assert!(warnings.is_empty(), "{warnings:?}"),
            }
        }
    }

    #[test]
    fn impossible_policies_are_refused_with_their_key() {
        let none = CookieOverrides {
            same_site: Some(SameSite::None),
            ..CookieOverrides::default()
        };
        let domain = |d: &str| CookieOverrides {
            domain: Some(d.into()),
            ..CookieOverrides::default()
        };
        for (public, spa, overrides, key, why) in [
            (
                "http://localhost:8000",
                &["http://127.0.0.1:3000"][..],
                CookieOverrides::default(),
                "spa_origins[0]",
                "different sites",
            ),
            (
                "http://127.0.0.1:8000",
                &["http://127.0.0.1:3000", "http://localhost:3000"][..],
                CookieOverrides::default(),
                "spa_origins[1]",
                "localhost and 127.0.0.1",
            ),
            (
                "https://api.acme.com",
                &["http://localhost:3000", "http://127.0.0.1:3000"][..],
                CookieOverrides::default(),
                "spa_origins[1]",
                "localhost and 127.0.0.1",
            ),
            (
                "http://api.acme.test",
                &["http://www.other.test"][..],
                CookieOverrides::default(),
                "spa_origins[0]",
                "rule 6",
            ),
            (
                "http://localhost:8000",
                &["https://www.acme.com"][..],
                CookieOverrides::default(),
                "spa_origins[0]",
                "mixed content",
            ),
            (
                "http://api.acme.test",
                &[][..],
                none.clone(),
                "session.same_site",
                "rule 5",
            ),
            (
                "https://api.acme.com",
                &[][..],
                domain("www.acme.com"),
                "session.cookie_domain",
                "does not cover",
            ),
            (
                "https://api.acme.com",
                &[][..],
                domain("other.com"),
                "session.cookie_domain",
                "does not cover",
            ),
            (
                "https://api.acme.com",
                &[][..],
                domain("com"),
                "session.cookie_domain",
                "public suffix",
            ),
            (
                "https://myapp.fly.dev",
                &[][..],
                domain("fly.dev"),
                "session.cookie_domain",
                "public suffix",
            ),
            (
                "https://myapp.vercel.app",
                &[][..],
                domain(".vercel.app"),
                "session.cookie_domain",
                "public suffix",
            ),
            (
                "http://localhost:8000",
                &[][..],
                domain("localhost"),
                "session.cookie_domain",
                "rule 10",
            ),
            (
                "http://127.0.0.1:8000",
                &[][..],
                domain("127.0.0.1"),
                "session.cookie_domain",
                "IP address",
            ),
        ] {
            let problems = policy(public, spa, overrides)
                .err()
                .unwrap_or_else(|| panic!("{public} {spa:?} must be refused"));
            assert!(
                problems
                    .iter()
                    .any(|p| p.key == key && p.message.contains(why)),
                "{public} {spa:?}: want {key} / {why}, got {problems:?}"
            );
        }
    }

    #[test]
    fn overrides_are_honoured() {
        let (p, warnings) = policy(
            "https://api.acme.com",
            &["https://www.acme.com"],
            CookieOverrides {
                domain: Some(".Acme.com".into()),
                same_site: Some(SameSite::Strict),
            },
        )
        .expect("valid");
        assert_eq!(p.cookie().domain.as_deref(), Some("acme.com"));
        assert_eq!(p.cookie().same_site, SameSite::Strict);
        assert!(warnings.iter().any(|w| w.contains("every subdomain")));
        assert!(warnings.iter().any(|w| w.contains("e-mail link")));

        let (p, warnings) = policy(
            "https://api.acme.com",
            &["https://app.other.com"],
            CookieOverrides {
                same_site: Some(SameSite::Lax),
                ..CookieOverrides::default()
            },
        )
        .expect("valid: the operator accepts bearer transport for that SPA");
        assert_eq!(p.cookie().same_site, SameSite::Lax);
        assert!(!p.cookie().partitioned);
        assert!(warnings.iter().any(|w| w.contains("never sent")));

        let (p, _) = policy(
            "http://localhost:8000",
            &[],
            CookieOverrides {
                same_site: Some(SameSite::None),
                ..CookieOverrides::default()
            },
        )
        .expect("None is possible on loopback");
        assert!(p.cookie().secure && p.cookie().partitioned);
    }

    #[test]
    fn trust_lists_are_derived() {
        let (p, _) = OriginsPolicy::new(
            origin("https://api.acme.com"),
            vec![
                pattern("https://www.acme.com"),
                pattern("https://*.preview.acme.com"),
            ],
            vec![
                pattern("https://admin.acme.com"),
                pattern("https://www.acme.com"),
            ],
            CookieOverrides::default(),
        )
        .expect("valid");
        let cors: Vec<String> = p
            .cors_allowed_origins()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            cors,
            [
                "https://api.acme.com",
                "https://www.acme.com",
                "https://*.preview.acme.com"
            ]
        );
        let csrf: Vec<String> = p
            .csrf_trusted_origins()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            csrf,
            [
                "https://www.acme.com",
                "https://*.preview.acme.com",
                "https://admin.acme.com"
            ]
        );
        assert!(p.is_allowed_spa(&origin("https://pr-1.preview.acme.com")));
        assert!(!p.is_allowed_spa(&origin("https://admin.acme.com")));
        assert!(p.is_csrf_trusted(&origin("https://admin.acme.com")));
        assert!(p.is_csrf_trusted(&origin("https://api.acme.com")));
        assert!(!p.is_csrf_trusted(&origin("https://evil.test")));
    }

    #[test]
    fn verdicts_name_the_rule() {
        let (lax, _) = policy(
            "http://localhost:8000",
            &["http://localhost:3000"],
            CookieOverrides::default(),
        )
        .expect("valid");
        for (o, want) in [
            (None, "no Origin"),
            (Some("http://localhost:8000"), "same origin"),
            (Some("http://localhost:3000"), "rule 1"),
            (Some("http://127.0.0.1:3000"), "localhost and 127.0.0.1"),
            (
                Some("http://evil.test"),
                "SameSite=Lax: the cookie is not sent (rule 4)",
            ),
            (Some("https://www.acme.com"), "rule 12"),
        ] {
            let o = o.map(origin);
            let v = lax.cookie_verdict(o.as_ref());
            assert!(v.contains(want), "{o:?}: {v}");
        }
        let (chips, _) = policy(
            "https://api.acme.com",
            &["https://app.other.com"],
            CookieOverrides::default(),
        )
        .expect("valid");
        assert!(
            chips
                .cookie_verdict(Some(&origin("https://app.other.com")))
                .contains("rule 8")
        );
    }
}
