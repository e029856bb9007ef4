//! Schemeful sites by the Public Suffix List, and how two origins relate: the one definition
//! the policy, the debug endpoint and the doctor share.

use std::fmt;

use serde::Serialize;

use crate::origin::Origin;

/// A schemeful site: scheme + registrable domain. Browsers decide `SameSite` by it (rule 4);
/// ports never matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Site {
    scheme: String,
    domain: String,
}

impl Site {
    pub(super) fn new(scheme: String, domain: String) -> Self {
        Self { scheme, domain }
    }

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
pub(super) fn registrable_domain(host: &str) -> &str {
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

/// Whether `a` and `b` mix a loopback name with a loopback address (`localhost` and
/// `127.0.0.1`): both loopback, yet different sites to a browser (rule 4), the most common
/// reason a development cookie is never sent.
pub fn is_loopback_mix(a: &Origin, b: &Origin) -> bool {
    (a.is_localhost_name() && b.is_loopback_ip()) || (a.is_loopback_ip() && b.is_localhost_name())
}

/// How a page at `page` relates to `api`: same origin, same site (schemeful, by the Public
/// Suffix List; ports ignored) or cross-site.
pub fn relation(page: &Origin, api: &Origin) -> Relation {
    if page == api {
        Relation::SameOrigin
    } else if site_of(page) == site_of(api) {
        Relation::SameSite
    } else {
        Relation::CrossSite
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origins::OriginPattern;

    fn origin(s: &str) -> Origin {
        Origin::parse(s).expect("origin")
    }

    fn pattern(s: &str) -> OriginPattern {
        OriginPattern::parse(s).expect("pattern")
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
}
