//! Making a backend's `Location` and `Set-Cookie` work on the proxy's origin: the `onProxyRes`
//! hacks people hand-write for http-proxy-middleware, done once.

use axum::http::uri::Authority;
use cookie::{Cookie, SameSite};

/// What the rewrites need to know about one proxied exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rewrite<'a> {
    /// The upstream's `host:port`.
    pub(crate) upstream: &'a Authority,
    /// The upstream prefix, mapped back onto paths when `strip_prefix` is on.
    pub(crate) prefix: &'a str,
    /// Whether the prefix was removed on the way up.
    pub(crate) strip_prefix: bool,
    /// The proxy is plain-http loopback: a `Secure` cookie would never come back.
    pub(crate) drop_secure: bool,
    /// Vestibule's own cookies (the session and the login device cookie): an upstream may set
    /// neither, or it could plant a session or a device trust of its choosing.
    pub(crate) protected_cookies: [&'a str; 2],
}

impl Rewrite<'_> {
    /// `path` with the stripped prefix put back (no-op when the prefix is not stripped).
    fn map_path(&self, path: &str) -> String {
        if self.strip_prefix && self.prefix != "/" {
            if path == "/" {
                self.prefix.to_owned()
            } else {
                format!("{}{path}", self.prefix)
            }
        } else {
            path.to_owned()
        }
    }

    /// The `Location` to send to the browser: an absolute URL on the upstream becomes a path on
    /// the proxy; a path gets the prefix back. Other sites are left alone.
    pub(crate) fn location(&self, value: &str) -> Option<String> {
        if value.starts_with('/') && !value.starts_with("//") {
            return self
                .strip_prefix
                .then(|| self.map_path(value))
                .filter(|out| out != value);
        }
        let url = url::Url::parse(value).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let same = host.eq_ignore_ascii_case(self.upstream.host())
            && self.upstream.port_u16().unwrap_or(80) == port;
        if !same {
            return None;
        }
        let mut out = self.map_path(url.path());
        if let Some(q) = url.query() {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = url.fragment() {
            out.push('#');
            out.push_str(f);
        }
        // `http://upstream//evil.test/` must not become `//evil.test/`: scheme-relative, another
        // site (found by fuzzing). Left as it was, it points at the upstream, which is harmless.
        if out.starts_with("//") || out.starts_with("/\\") {
            return None;
        }
        Some(out)
    }

    /// The `Set-Cookie` to send to the browser: `Domain` removed (the cookie belongs to the
    /// proxy's host), `Secure` dropped on plain-http loopback (with `SameSite=None`, which needs
    /// `Secure`, turned into `Lax`: it is same-origin now), `Path` put under the prefix.
    /// `None` (outer) drops the header: the upstream tried to set one of Vestibule's cookies, or
    /// sent one the parser cannot read (a browser might still store it, `Domain` and all, so it
    /// is not passed through unchecked).
    pub(crate) fn set_cookie(&self, value: &str) -> Option<Option<String>> {
        let Ok(mut c) = Cookie::parse(value) else {
            return None;
        };
        let bare = |n: &str| {
            n.strip_prefix("__Host-")
                .or_else(|| n.strip_prefix("__Secure-"))
                .unwrap_or(n)
                .to_owned()
        };
        let name = bare(c.name());
        if self.protected_cookies.iter().any(|own| bare(own) == name) {
            return None;
        }
        // A `Domain` the parser skipped (`Domain=.`, `Domain=`) still goes: the cookie is then
        // written out again with only the attributes it understood.
        let mut changed = value.split(';').skip(1).any(|a| {
            a.split('=')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("domain"))
        });
        if c.domain().is_some() {
            c.unset_domain();
            changed = true;
        }
        if self.drop_secure && c.secure() == Some(true) {
            c.set_secure(None);
            if c.same_site() == Some(SameSite::None) {
                c.set_same_site(SameSite::Lax);
            }
            changed = true;
        }
        if self.strip_prefix && self.prefix != "/" {
            // A Path not starting with `/` is ignored by browsers (RFC 6265 §5.2.4): use `/`, so
            // it cannot turn into `/apinotes`, outside the prefix (found by fuzzing).
            let path = c
                .path()
                .filter(|p| p.starts_with('/'))
                .unwrap_or("/")
                .to_owned();
            c.set_path(self.map_path(&path));
            changed = true;
        }
        Some(changed.then(|| c.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(auth: &Authority, strip: bool, drop_secure: bool) -> Rewrite<'_> {
        Rewrite {
            upstream: auth,
            prefix: "/api",
            strip_prefix: strip,
            drop_secure,
            protected_cookies: ["vestibule_session", "vestibule_device"],
        }
    }

    #[test]
    fn locations_on_the_upstream_become_paths_on_the_proxy() {
        let a: Authority = "127.0.0.1:8001".parse().expect("authority");
        let r = rw(&a, false, true);
        assert_eq!(
            r.location("http://127.0.0.1:8001/notes/1?x=1#f").as_deref(),
            Some("/notes/1?x=1#f")
        );
        assert_eq!(r.location("/notes"), None, "a path needs no change");
        assert_eq!(r.location("https://elsewhere.test/x"), None);
        assert_eq!(r.location("http://127.0.0.1:9999/x"), None);
        let r = rw(&a, true, true);
        assert_eq!(r.location("/notes").as_deref(), Some("/api/notes"));
        assert_eq!(
            r.location("http://127.0.0.1:8001/").as_deref(),
            Some("/api")
        );
        assert_eq!(r.location("//evil.test/x"), None);
    }

    #[test]
    fn cookies_lose_domain_and_secure_and_get_the_prefix() {
        let a: Authority = "127.0.0.1:8001".parse().expect("authority");
        let r = rw(&a, true, true);
        let out = r
            .set_cookie("pref=1; Domain=backend.internal; Path=/; Secure; SameSite=None; HttpOnly")
            .expect("kept")
            .expect("changed");
        assert!(!out.contains("Domain"), "{out}");
        assert!(!out.contains("Secure"), "{out}");
        assert!(out.contains("SameSite=Lax"), "{out}");
        assert!(out.contains("Path=/api"), "{out}");
        assert!(out.contains("HttpOnly"), "{out}");
        let r = rw(&a, false, false);
        assert_eq!(r.set_cookie("a=b; Path=/; Secure"), Some(None), "unchanged");
        assert_eq!(
            r.set_cookie("vestibule_session=forged; Path=/"),
            None,
            "an upstream cannot set the gateway's session cookie"
        );
        assert_eq!(
            r.set_cookie("__Host-vestibule_session=forged; Path=/"),
            None
        );
        assert_eq!(
            r.set_cookie("vestibule_device=forged; Path=/; Max-Age=999999"),
            None,
            "an upstream cannot plant a login device cookie either"
        );
        assert_eq!(r.set_cookie("__Secure-vestibule_device=forged"), None);
    }
}
