//! A validated web origin (`scheme://host[:port]`), compared the way browsers compare them.

use std::fmt;

/// Why a string is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an origin: {reason}")]
pub struct OriginError {
    input: String,
    reason: &'static str,
}

impl OriginError {
    /// What is wrong, without the input (for messages that name the input themselves).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// `scheme://host:port` with the scheme and host lower-cased and the port made explicit, so
/// `http://LOCALHOST:80` equals `http://localhost`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an exact origin as browsers send it in `Origin` (a trailing `/` is tolerated;
    /// a path, query, user info or wildcard is refused).
    ///
    /// # Errors
    /// [`OriginError`] naming what is wrong.
    pub fn parse(input: &str) -> Result<Self, OriginError> {
        let err = |reason| OriginError {
            input: input.to_owned(),
            reason,
        };
        if input.contains('*') {
            return Err(err("wildcards are not origins; list each origin"));
        }
        let url = url::Url::parse(input).map_err(|_| err("not a URL"))?;
        if !(url.path() == "/" || url.path().is_empty())
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(err("an origin has no path, query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("an origin has no user info"));
        }
        Self::from_url(&url)
            .ok_or_else(|| err("only http and https origins with a host are supported"))
    }

    /// Parses an origin written in the configuration, where browsers' leniency is a trap: the
    /// value must be exactly `scheme://host[:port]` as a browser sends it in `Origin`. A trailing
    /// `/`, a path, query, fragment, user info, a missing scheme or a wildcard is refused,
    /// because the browser's `Origin` never has them and such an entry would silently match
    /// nothing (or something else).
    ///
    /// # Errors
    /// [`OriginError`] naming what is wrong.
    pub fn parse_config(input: &str) -> Result<Self, OriginError> {
        let err = |reason| OriginError {
            input: input.to_owned(),
            reason,
        };
        if input.trim() != input {
            return Err(err("remove the surrounding spaces"));
        }
        if input == "null" {
            return Err(err(
                "`null` is the origin of sandboxed frames, file:// pages and redirects; it can never be trusted",
            ));
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(err(
                "missing scheme: write http://host[:port] or https://host[:port]",
            ));
        };
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(err("only http and https origins are supported"));
        }
        if rest.ends_with('/') {
            return Err(err(
                "remove the trailing /: browsers send the Origin without it",
            ));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(err("an origin has no path, query or fragment"));
        }
        if rest.contains('@') {
            return Err(err("an origin has no user info"));
        }
        Self::parse(input)
    }

    /// The origin of a full URL (as in `Referer`).
    ///
    /// # Errors
    /// [`OriginError`] when it is not an http(s) URL.
    pub fn parse_prefix(input: &str) -> Result<Self, OriginError> {
        let err = |reason| OriginError {
            input: input.to_owned(),
            reason,
        };
        let url = url::Url::parse(input).map_err(|_| err("not a URL"))?;
        Self::from_url(&url)
            .ok_or_else(|| err("only http and https origins with a host are supported"))
    }

    /// The origin of a parsed URL, if it is http(s) with a host.
    pub fn from_url(url: &url::Url) -> Option<Self> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        Some(Self {
            scheme: scheme.to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, lower-case (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit even when it is the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is an IP address (v4, or v6 in brackets) rather than a name.
    pub fn is_ip(&self) -> bool {
        self.host.starts_with('[') || self.host.parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// Whether browsers treat pages and answers of this origin as a secure context: https, or a
    /// loopback host over plain http. `Secure` cookies and `Clear-Site-Data` work only there.
    pub fn is_secure_context(&self) -> bool {
        self.scheme == "https" || self.is_loopback()
    }

    /// Whether the host is a loopback name or address, which browsers treat as a secure context.
    pub fn is_loopback(&self) -> bool {
        self.is_localhost_name() || self.host.starts_with("127.") || self.host == "[::1]"
    }

    /// Whether the host is a loopback *name* (`localhost`, `*.localhost`): a different site
    /// from the loopback addresses to a browser (rule 4), though both are loopback.
    pub fn is_localhost_name(&self) -> bool {
        self.host == "localhost" || self.host.ends_with(".localhost")
    }

    /// Whether the host is a loopback IP address (`127.0.0.1`, `[::1]`).
    pub fn is_loopback_ip(&self) -> bool {
        self.is_ip() && self.is_loopback()
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = matches!(
            (self.scheme.as_str(), self.port),
            ("http", 80) | ("https", 443)
        );
        if default {
            write!(f, "{}://{}", self.scheme, self.host)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_default_ports() {
        let a = Origin::parse("HTTP://LocalHost:80").expect("origin");
        let b = Origin::parse("http://localhost/").expect("origin");
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "http://localhost");
        assert_ne!(
            Origin::parse("http://localhost:3000").ok(),
            Origin::parse("https://localhost:3000").ok()
        );
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for bad in [
            "null",
            "*",
            "https://*.acme.com",
            "http://a.test/path",
            "ftp://x.test",
            "localhost:3000",
            "http://u:p@a.test",
            "",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Origin::parse_prefix("https://www.acme.com/app?x=1")
                .map(|o| o.to_string())
                .ok(),
            Some("https://www.acme.com".to_owned())
        );
    }

    #[test]
    fn config_origins_are_strict() {
        for (bad, why) in [
            ("http://localhost:3000/", "trailing /"),
            ("localhost:3000", "missing scheme"),
            ("www.acme.com", "missing scheme"),
            ("null", "null"),
            ("http://a.test/app", "path"),
            ("http://a.test?x", "query"),
            ("http://a.test#x", "fragment"),
            ("http://u@a.test", "user info"),
            ("ftp://a.test", "http and https"),
            (" http://a.test", "spaces"),
            ("https://*.acme.com", "wildcards"),
        ] {
            let e = Origin::parse_config(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        assert_eq!(
            Origin::parse_config("HTTPS://WWW.Acme.com:443")
                .map(|o| o.to_string())
                .ok(),
            Some("https://www.acme.com".to_owned())
        );
    }

    #[test]
    fn knows_ip_hosts() {
        assert!(Origin::parse("http://127.0.0.1:3000").expect("o").is_ip());
        assert!(Origin::parse("http://[::1]:3000").expect("o").is_ip());
        assert!(!Origin::parse("http://localhost:3000").expect("o").is_ip());
    }

    #[test]
    fn tells_loopback_names_from_loopback_addresses() {
        let o = |s| Origin::parse(s).expect("o");
        for name in ["http://localhost:3000", "http://app.localhost"] {
            assert!(
                o(name).is_localhost_name() && !o(name).is_loopback_ip(),
                "{name}"
            );
        }
        for ip in ["http://127.0.0.1:3000", "http://[::1]:3000"] {
            assert!(o(ip).is_loopback_ip() && !o(ip).is_localhost_name(), "{ip}");
        }
        for other in ["http://localhost.acme.test", "http://10.0.0.1"] {
            assert!(
                !o(other).is_localhost_name() && !o(other).is_loopback_ip(),
                "{other}"
            );
        }
    }

    #[test]
    fn knows_loopback() {
        assert!(
            Origin::parse("http://localhost:3000")
                .expect("o")
                .is_loopback()
        );
        assert!(
            Origin::parse("http://127.0.0.1:3000")
                .expect("o")
                .is_loopback()
        );
        assert!(Origin::parse("http://[::1]:3000").expect("o").is_loopback());
        assert!(
            !Origin::parse("http://api.acme.test")
                .expect("o")
                .is_loopback()
        );
    }
}
