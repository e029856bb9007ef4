//! Entry points for fuzzing the parsers that read attacker-controlled input: the `Cookie` and
//! `Authorization` headers, tokens, origins and origin patterns, forwarding headers,
//! configuration text, and the proxy's rewriting of a backend's `Set-Cookie` and `Location`. `fuzz/` drives them with cargo-fuzz; the property tests below run a
//! bounded number of cases in every `cargo test`.
//!
//! Not part of the API (hidden, unstable): each function takes raw input and must never panic.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::origin::Origin;
use crate::origins::OriginPattern;
use crate::token::{SecretToken, TokenKind};

/// Builds a header map from raw pairs, skipping what `http` itself refuses.
fn headers(pairs: &[(&[u8], &[u8])]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(n, v);
        }
    }
    map
}

/// The request credential from `Cookie` / `Authorization` headers; `true` when one was found.
pub fn credential(pairs: &[(&[u8], &[u8])]) -> bool {
    let map = headers(pairs);
    matches!(
        crate::session::credential_from_headers(&map, "vestibule_session"),
        Ok(c) if !matches!(c, crate::session::Credential::None { .. })
    )
}

/// A token of either kind; `true` when it parses.
pub fn token(input: &str) -> bool {
    SecretToken::parse(TokenKind::Session, input).is_ok()
        | SecretToken::parse(TokenKind::AccessToken, input).is_ok()
}

/// An `Origin` header value; when it parses, its text must parse back to the same origin.
pub fn origin(input: &str) -> bool {
    match Origin::parse(input) {
        Ok(o) => {
            let again = Origin::parse(&o.to_string());
            assert_eq!(
                again.as_ref().ok(),
                Some(&o),
                "{input:?} does not round-trip"
            );
            true
        }
        Err(_) => false,
    }
}

/// A configured pattern against an origin; `true` when it matches.
pub fn origin_pattern(pattern: &str, origin: &str) -> bool {
    let (Ok(p), Ok(o)) = (OriginPattern::parse(pattern), Origin::parse(origin)) else {
        return false;
    };
    let _ = p.site();
    p.matches(&o)
}

/// The client address behind trusted proxies from raw forwarding headers, read as each
/// `limits.client_ip_header` would (the `X-Forwarded-For` reading is returned).
pub fn client_ip(pairs: &[(&[u8], &[u8])]) -> std::net::IpAddr {
    use crate::client_ip::ClientIpHeader;
    let proxies = crate::client_ip::TrustedProxies::parse(&["127.0.0.0/8", "10.0.0.0/8", "::1"])
        .unwrap_or_default();
    let map = headers(pairs);
    for header in [ClientIpHeader::Forwarded, ClientIpHeader::XRealIp] {
        let _ = proxies
            .clone()
            .with_header(header)
            .client_ip([127, 0, 0, 1].into(), &map);
    }
    crate::client_ip::group(proxies.client_ip([127, 0, 0, 1].into(), &map))
}

/// Configuration text as `vestibule.toml`; `true` when it loads and validates.
pub fn config_toml(text: &str) -> bool {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};
    let fig = Figment::from(Serialized::defaults(crate::config::RawConfig::default()))
        .merge(Toml::string(text));
    match fig.extract::<crate::config::RawConfig>() {
        Ok(raw) => raw.validate().is_ok(),
        Err(_) => false,
    }
}

/// A cookie as a browser reads a `Set-Cookie` value (RFC 6265 §5.2): the trimmed name and value
/// before the first `;`, and the attribute names (lowercase) with their values.
fn browser_view(set_cookie: &str) -> (String, String, Vec<(String, String)>) {
    let mut parts = set_cookie.split(';');
    let pair = parts.next().unwrap_or("");
    let (name, value) = pair.split_once('=').unwrap_or(("", pair));
    let attrs = parts
        .map(|a| {
            let (n, v) = a.split_once('=').unwrap_or((a, ""));
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (name.trim().to_owned(), value.trim().to_owned(), attrs)
}

/// The proxy prefixes the rewrite entry points pick from (`flags` bits 2–3).
const PREFIXES: [&str; 3] = ["/api", "/", "/a/b"];

fn rewrite_for<'a>(
    upstream: &'a axum::http::uri::Authority,
    flags: u8,
) -> crate::proxy::rewrite::Rewrite<'a> {
    crate::proxy::rewrite::Rewrite {
        upstream,
        prefix: PREFIXES[usize::from(flags >> 2) % PREFIXES.len()],
        strip_prefix: flags & 1 == 1,
        drop_secure: flags & 2 == 2,
        protected_cookies: ["vestibule_session", "vestibule_device"],
    }
}

/// The upstream the rewrite entry points proxy to.
const UPSTREAM: &str = "127.0.0.1:8001";

/// A backend's `Set-Cookie` through the proxy (`flags`: bit 0 strip the prefix, bit 1 plain-http
/// loopback, bits 2–3 the prefix). Panics when a promise is broken: what reaches the browser
/// never carries a `Domain`, keeps the name and value, loses `Secure` only on plain-http
/// loopback, has its `Path` under the prefix when the prefix is stripped, and is never
/// one of Vestibule's own cookies (session, login device). Returns what the browser gets
/// (`None`: the header is dropped).
pub fn set_cookie(value: &str, flags: u8) -> Option<String> {
    let upstream: axum::http::uri::Authority = match UPSTREAM.parse() {
        Ok(a) => a,
        Err(_) => return None,
    };
    let rw = rewrite_for(&upstream, flags);
    let sent = match rw.set_cookie(value)? {
        Some(new) => new,
        None => value.to_owned(),
    };
    let (in_name, in_value, in_attrs) = browser_view(value);
    let (name, val, attrs) = browser_view(&sent);
    let has = |attrs: &[(String, String)], n: &str| attrs.iter().any(|(a, _)| a == n);
    assert!(
        !has(&attrs, "domain"),
        "{value:?} reaches the browser with a Domain: {sent:?}"
    );
    assert_eq!(
        (&name, &val),
        (&in_name, &in_value),
        "{value:?} changed name or value: {sent:?}"
    );
    let bare = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(&name);
    assert!(
        !rw.protected_cookies.contains(&bare),
        "{value:?} sets one of Vestibule's own cookies"
    );
    if !rw.drop_secure && has(&in_attrs, "secure") {
        assert!(has(&attrs, "secure"), "{value:?} lost Secure: {sent:?}");
    }
    if rw.strip_prefix && rw.prefix != "/" {
        let path = attrs
            .iter()
            .rev()
            .find(|(a, v)| a == "path" && v.starts_with('/'))
            .map(|(_, v)| v.as_str());
        assert!(
            path.is_some_and(|p| p == rw.prefix
                || p.strip_prefix(rw.prefix)
                    .is_some_and(|r| r.starts_with('/'))),
            "{value:?} escapes the prefix {}: {sent:?}",
            rw.prefix
        );
    }
    Some(sent)
}

/// A backend's `Location` through the proxy (`flags` as for [`set_cookie`]). Panics when a
/// rewrite leads off the proxy's origin (a scheme-relative `//host` or `/\host`) or, with the
/// prefix stripped, out from under the prefix. Returns the rewritten value, if any.
pub fn location(value: &str, flags: u8) -> Option<String> {
    let upstream: axum::http::uri::Authority = UPSTREAM.parse().ok()?;
    let rw = rewrite_for(&upstream, flags);
    let out = rw.location(value)?;
    assert!(
        out.starts_with('/') && !out.starts_with("//") && !out.starts_with("/\\"),
        "{value:?} became {out:?}, not a path on this origin"
    );
    if rw.strip_prefix && rw.prefix != "/" {
        assert!(
            out == rw.prefix
                || out
                    .strip_prefix(rw.prefix)
                    .is_some_and(|r| r.starts_with(['/', '?', '#'])),
            "{value:?} became {out:?}, outside {}",
            rw.prefix
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn header_pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        let name = prop_oneof![
            Just(b"cookie".to_vec()),
            Just(b"authorization".to_vec()),
            Just(b"x-forwarded-for".to_vec()),
            Just(b"forwarded".to_vec()),
            Just(b"x-real-ip".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        let value = prop_oneof![
            "[ -~]{0,80}".prop_map(String::into_bytes),
            "(Bearer|bearer|Basic) (vst_|vpat_)?[0-9A-Za-z]{0,60}".prop_map(String::into_bytes),
            "vestibule_session=(vst_)?[0-9A-Za-z]{0,55}(; [a-z]=[a-z]{0,4}){0,3}"
                .prop_map(String::into_bytes),
            "((for=)?\"?\\[?[0-9a-f:.]{0,30}\\]?(:[0-9]{1,5})?\"?, ?){0,4}"
                .prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..100),
        ];
        proptest::collection::vec((name, value), 0..6)
    }

    fn as_refs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
        pairs
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect()
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn header_parsers_never_panic(pairs in header_pairs()) {
            let refs = as_refs(&pairs);
            let _ = credential(&refs);
            let _ = client_ip(&refs);
        }

        #[test]
        fn any_text_is_a_token_only_with_a_valid_checksum(s in "(vst_|vpat_)?[0-9A-Za-z_]{0,60}|\\PC{0,70}") {
            if token(&s) {
                prop_assert!(s.starts_with("vst_") || s.starts_with("vpat_"));
            }
        }

        #[test]
        fn one_changed_character_breaks_a_real_token(pos in 4usize..53, c in "[0-9A-Za-z]") {
            let t = SecretToken::generate(TokenKind::Session);
            let text = t.expose().to_owned();
            prop_assume!(text.len() > pos && &text[pos..=pos] != c.as_str());
            let mut changed = text.clone();
            changed.replace_range(pos..=pos, &c);
            prop_assert!(token(&text));
            prop_assert!(!token(&changed), "{} accepted", changed);
        }

        #[test]
        fn origins_round_trip_or_are_refused(s in "(https?|ftp|null|HTTP)(://)?[a-zA-Z0-9.:\\-\\[\\]_*]{0,40}(/[a-z]{0,5})?|\\PC{0,50}") {
            let _ = origin(&s);
        }

        #[test]
        fn patterns_never_match_across_schemes(
            host in "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
            sub in "[a-z]{1,8}",
        ) {
            let pattern = format!("https://*.{host}");
            let other_scheme = format!("http://{sub}.{host}");
            let bare = format!("https://{host}");
            let suffixed = format!("https://{sub}.{host}.evil.test");
            let glued = format!("https://{sub}{host}");
            // Another scheme, the bare domain and look-alikes never match (anchored patterns).
            for candidate in [other_scheme, bare, suffixed, glued] {
                prop_assert!(!origin_pattern(&pattern, &candidate), "{} matched {}", pattern, candidate);
            }
        }

        #[test]
        fn arbitrary_config_text_never_panics(text in "([a-z_.\\[\\]]{1,20} ?= ?(\"[ -~]{0,20}\"|[0-9]{1,6}|true|false|\\[\\]))?(\n[a-z_.\\[\\]]{1,20} ?= ?(\"[ -~]{0,20}\"|[0-9]{1,6}))*|\\PC{0,80}") {
            let _ = config_toml(&text);
        }
    }

    fn cookie_text() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("vestibule_session".to_owned()),
            Just("__Host-vestibule_session".to_owned()),
            Just("__Secure-vestibule_session".to_owned()),
            "[A-Za-z_\\-]{0,10}",
            "[ -:<-~]{0,10}",
        ];
        let attr = prop_oneof![
            "(Domain|domain|DOMAIN) ?= ?\\.?[a-z.]{0,12}",
            "(Path|path) ?= ?[/a-z.\\\\]{0,10}",
            Just("Secure".to_owned()),
            Just("HttpOnly".to_owned()),
            "SameSite=(None|Lax|Strict|x)",
            "(Max-Age|Expires)=[ -:<-~]{0,12}",
            "[ -:<-~]{0,15}",
        ];
        (
            name,
            "[ -:<-~]{0,12}",
            proptest::collection::vec(attr, 0..5),
            prop_oneof![Just("="), Just(""), Just(" = ")],
        )
            .prop_map(|(n, v, attrs, eq)| {
                let mut s = format!("{n}{eq}{v}");
                for a in attrs {
                    s.push_str("; ");
                    s.push_str(&a);
                }
                s
            })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn set_cookie_rewriting_keeps_its_promises(value in cookie_text(), flags in 0u8..12) {
            // The checks are inside the entry point (shared with cargo-fuzz): it panics on a break.
            let _ = set_cookie(&value, flags);
        }

        #[test]
        fn arbitrary_set_cookie_text_never_panics(value in "\\PC{0,80}", flags in any::<u8>()) {
            let _ = set_cookie(&value, flags);
        }

        #[test]
        fn location_rewriting_stays_on_this_origin(
            value in "(https?://(127\\.0\\.0\\.1(:8001|:80)?|elsewhere\\.test)|)[/\\\\]{0,3}[a-z./\\\\]{0,12}(\\?[a-z=&/]{0,6})?(#[a-z/]{0,4})?|\\PC{0,60}",
            flags in 0u8..12,
        ) {
            let _ = location(&value, flags);
        }
    }

    #[test]
    fn set_cookie_rewrites_known_cases() {
        // Domain gone, Secure gone on plain-http loopback, Path under the stripped prefix.
        let out =
            set_cookie("pref=dark; Domain=backend.internal; Path=/; Secure", 0b0011).expect("kept");
        assert_eq!(browser_view(&out).2.len(), 1, "{out}");
        assert!(out.contains("Path=/api"), "{out}");
        // The session cookie, in any prefixed form, is dropped.
        for planted in ["vestibule_session=x", "__Host-vestibule_session=x; Path=/"] {
            assert_eq!(set_cookie(planted, 0), None, "{planted}");
        }
        // A relative Path still lands under the prefix.
        let out = set_cookie("a=b; Path=notes", 0b0001).expect("kept");
        assert!(out.contains("Path=/api"), "{out}");
        // What the cookie parser cannot read is not passed through with its Domain.
        assert_eq!(set_cookie("=x; Domain=evil.test", 0), None);
        // An upstream URL with a scheme-relative path is not turned into `//host`.
        assert_eq!(location("http://127.0.0.1:8001//evil.test/x", 0), None);
        assert_eq!(location("http://127.0.0.1:8001/\\evil.test/x", 0), None);
        assert_eq!(
            location("http://127.0.0.1:8001//evil.test/x", 0b0001).as_deref(),
            Some("/api//evil.test/x")
        );
    }

    #[test]
    fn the_default_configuration_validates() {
        assert!(config_toml(""));
        assert!(!config_toml("listen = 5"));
    }
}
