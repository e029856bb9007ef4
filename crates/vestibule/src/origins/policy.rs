//! [`OriginsPolicy`]: the validated origins policy and everything derived from it.

use cookie::SameSite;

use super::pattern::OriginPattern;
use super::site::{Relation, Site, is_loopback_mix, is_public_suffix, relation, site_of};
use crate::origin::Origin;
use crate::problem::Problem;
use crate::session::{CookieConfig, DEFAULT_COOKIE_NAME};

/// Explicit cookie settings that override what the policy derives.
#[derive(Debug, Clone, Default)]
pub struct CookieOverrides {
    /// `session.cookie_domain`: shares the cookie with sibling subdomains. Validated: must
    /// domain-match the API host and must not be a public suffix.
    pub domain: Option<String>,
    /// `session.same_site`.
    pub same_site: Option<SameSite>,
    /// `session.cookie_name`: the base name ([`DEFAULT_COOKIE_NAME`] when unset); the policy
    /// adds the `__Host-` or `__Secure-` prefix over https.
    pub name: Option<String>,
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
///
/// The one source of these answers: the CORS and CSRF layers, the gateway's WebSocket origin
/// check, WebAuthn's allowed origins, the session cookie's attributes and `/auth/_debug` all ask
/// one shared `Arc<OriginsPolicy>` instead of holding copies of its lists.
#[derive(Debug, Clone)]
pub struct OriginsPolicy {
    public_origin: Origin,
    api_site: Site,
    spa_origins: Vec<OriginPattern>,
    csrf_extra: Vec<OriginPattern>,
    /// The exact CORS origins as browsers write them in `Origin`, matched without parsing.
    cors_exact: Vec<String>,
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
        // Over https the name carries a prefix browsers enforce: `__Host-` (Secure, Path=/, no
        // Domain) for a host-only cookie, `__Secure-` when a Domain is set.
        let base = overrides.name.as_deref().unwrap_or(DEFAULT_COOKIE_NAME);
        let cookie_name = match (https, &domain) {
            (true, None) => format!("__Host-{base}"),
            (true, Some(_)) => format!("__Secure-{base}"),
            (false, _) => base.to_owned(),
        };
        let mut policy = Self {
            api_site,
            public_origin,
            spa_origins: spa_origins.into_iter().map(|(_, p)| p).collect(),
            csrf_extra: csrf_trusted_origins.into_iter().map(|(_, p)| p).collect(),
            cors_exact: Vec::new(),
            cookie: CookieAttributes {
                secure,
                same_site,
                partitioned,
                domain,
            },
            cookie_name,
        };
        policy.cors_exact = policy
            .cors_allowed_origins()
            .iter()
            .filter_map(|p| p.as_origin().map(ToString::to_string))
            .collect();
        Ok((policy, warnings))
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

    /// Whether an `Origin` header's text is, byte for byte, one of the exact CORS origins as
    /// browsers write them: the CORS layer's answer without parsing. `false` says nothing (a
    /// pattern may still match: ask [`Self::is_cors_allowed`]).
    pub fn is_cors_allowed_exactly(&self, origin_header: &str) -> bool {
        self.cors_exact.iter().any(|e| e == origin_header)
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

    /// Whether a page at `origin` may make cookie-authenticated writes in a request whose
    /// `Host` header is `host`: this server's origin, an SPA origin or a `csrf.trusted_origins`
    /// entry, or the origin that `Host` names with this server's scheme (same origin by Host:
    /// a browser cannot forge `Host` cross-origin, and the scheme is ours; this is what lets a
    /// server reached under another name, e.g. `127.0.0.1` for `localhost`, accept its own
    /// pages). The one rule the CSRF layer, the gateway's WebSocket check and `/auth/_debug`
    /// apply.
    pub fn is_csrf_trusted(&self, origin: &Origin, host: Option<&str>) -> bool {
        if *origin == self.public_origin
            || self
                .spa_origins
                .iter()
                .chain(&self.csrf_extra)
                .any(|p| p.matches(origin))
        {
            return true;
        }
        host.and_then(|host| {
            Origin::parse(&format!("{}://{host}", self.public_origin.scheme())).ok()
        })
        .is_some_and(|by_host| by_host == *origin)
    }

    /// The derived session cookie attributes.
    pub fn cookie(&self) -> &CookieAttributes {
        &self.cookie
    }

    /// The session cookie as the session layer sets it: the derived name and attributes,
    /// `HttpOnly` and `Path=/`. The one place the cookie's `Secure`, `SameSite`, `Partitioned`,
    /// `Domain` and prefix are decided.
    pub fn session_cookie(&self) -> CookieConfig {
        let c = &self.cookie;
        CookieConfig {
            name: self.cookie_name.clone(),
            secure: c.secure,
            same_site: c.same_site,
            domain: c.domain.clone(),
            partitioned: c.partitioned,
            ..CookieConfig::default()
        }
    }

    /// The session cookie's full name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// How `origin` relates to this server's origin.
    pub fn relation(&self, origin: &Origin) -> Relation {
        relation(origin, &self.public_origin)
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
                let why = if is_loopback_mix(origin, api) {
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
                ..CookieOverrides::default()
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
    fn the_session_cookie_is_derived_in_one_place() {
        let cookie = |public: &str, spa: &[&str], domain: Option<&str>, name: Option<&str>| {
            let overrides = CookieOverrides {
                domain: domain.map(str::to_owned),
                name: name.map(str::to_owned),
                ..CookieOverrides::default()
            };
            let (p, _) = policy(public, spa, overrides).expect("valid");
            let c = p.session_cookie();
            assert_eq!(c.name, p.cookie_name());
            assert_eq!(
                (c.secure, c.same_site, c.partitioned, c.domain.clone()),
                (
                    p.cookie().secure,
                    p.cookie().same_site,
                    p.cookie().partitioned,
                    p.cookie().domain.clone()
                )
            );
            assert_eq!(c.path, "/");
            c
        };
        let c = cookie("https://api.acme.com", &[], None, None);
        assert_eq!(c.name, "__Host-vestibule_session");
        assert!(c.secure);
        let c = cookie("https://api.acme.com", &[], Some("acme.com"), Some("sid"));
        assert_eq!(c.name, "__Secure-sid");
        let c = cookie("http://localhost:8000", &[], None, None);
        assert_eq!(c.name, "vestibule_session");
        assert!(!c.secure);
        // Secure without a prefix: SameSite=None on plain-http loopback (rule 6).
        let c = cookie(
            "http://localhost:8000",
            &["http://www.acme.test"],
            None,
            None,
        );
        assert_eq!(c.name, "vestibule_session");
        assert!(c.secure && c.partitioned);
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
        assert!(p.is_csrf_trusted(&origin("https://admin.acme.com"), None));
        assert!(p.is_csrf_trusted(&origin("https://api.acme.com"), None));
        assert!(!p.is_csrf_trusted(&origin("https://evil.test"), None));
        // Same origin by Host, with this server's scheme only.
        let by_host = Some("10.0.0.5:8443");
        assert!(p.is_csrf_trusted(&origin("https://10.0.0.5:8443"), by_host));
        assert!(!p.is_csrf_trusted(&origin("http://10.0.0.5:8443"), by_host));
        assert!(!p.is_csrf_trusted(&origin("https://evil.test"), by_host));
        assert!(!p.is_csrf_trusted(&origin("https://10.0.0.5:8443"), Some("bad host/")));
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
