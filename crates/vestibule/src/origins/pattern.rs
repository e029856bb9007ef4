//! [`OriginPattern`]: an allowed origin as configured, exact or an anchored `*.` wildcard.

use std::fmt;

use super::site::{Site, is_public_suffix, registrable_domain, site_of};
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
            Kind::Subdomains { scheme, suffix, .. } => {
                Site::new(scheme.clone(), registrable_domain(suffix).to_owned())
            }
        }
    }

    /// Whether this is an exact origin on a loopback name (`localhost`, `*.localhost`).
    pub(super) fn is_localhost_name(&self) -> bool {
        self.as_origin().is_some_and(Origin::is_localhost_name)
    }

    /// Whether this is an exact origin on a loopback IP address (`127.0.0.1`, `[::1]`).
    pub(super) fn is_loopback_ip(&self) -> bool {
        self.as_origin().is_some_and(Origin::is_loopback_ip)
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
}
