//! Entry points for fuzzing the parsers that read attacker-controlled input: the `Cookie` and
//! `Authorization` headers, tokens, origins and origin patterns, forwarding headers, and
//! configuration text. `fuzz/` drives them with cargo-fuzz; the property tests below run a
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

/// The client address behind trusted proxies from raw forwarding headers.
pub fn client_ip(pairs: &[(&[u8], &[u8])]) -> std::net::IpAddr {
    let proxies = crate::client_ip::TrustedProxies::parse(&["127.0.0.0/8", "10.0.0.0/8", "::1"])
        .unwrap_or_default();
    crate::client_ip::group(proxies.client_ip([127, 0, 0, 1].into(), &headers(pairs)))
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

    #[test]
    fn the_default_configuration_validates() {
        assert!(config_toml(""));
        assert!(!config_toml("listen = 5"));
    }
}
