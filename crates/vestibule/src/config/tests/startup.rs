//! Every start-up error names its key, and every start-up warning is said: one table of cases
//! each, apart from the other configuration tests so that each file stays readable.

use super::{Tweak, acme, strs};
use crate::config::*;

#[test]
fn every_start_up_error_names_its_key() {
    let cases: Vec<(Tweak, &str, &str)> = vec![
        (
            |r| r.spa_origins = strs(&["*"]),
            "spa_origins[0]",
            "every site",
        ),
        (
            |r| r.spa_origins = strs(&["http://localhost:3000", "http://localhost:3001/"]),
            "spa_origins[1]",
            "trailing /",
        ),
        (
            |r| r.spa_origins = strs(&["http://localhost:3000/app"]),
            "spa_origins[0]",
            "no path",
        ),
        (
            |r| r.spa_origins = strs(&["http://localhost:3000?x=1"]),
            "spa_origins[0]",
            "query",
        ),
        (
            |r| r.spa_origins = strs(&["localhost:3000"]),
            "spa_origins[0]",
            "missing scheme",
        ),
        (
            |r| r.spa_origins = strs(&["null"]),
            "spa_origins[0]",
            "never be trusted",
        ),
        (
            |r| {
                acme(r);
                r.spa_origins = strs(&["https://*.vercel.app"])
            },
            "spa_origins[0]",
            "public suffix",
        ),
        (
            |r| {
                acme(r);
                r.spa_origins = strs(&["https://www.*.acme.com"])
            },
            "spa_origins[0]",
            "first label",
        ),
        (
            |r| r.spa_origins = strs(&["http://127.0.0.1:3000"]),
            "spa_origins[0]",
            "different sites",
        ),
        (
            |r| {
                r.public_url = Some("http://127.0.0.1:8000".into());
                r.spa_origins = strs(&["http://localhost:3000"])
            },
            "spa_origins[0]",
            "localhost and 127.0.0.1",
        ),
        (
            |r| {
                r.public_url = Some("http://api.acme.test".into());
                r.spa_origins = strs(&["http://www.other.test"])
            },
            "spa_origins[0]",
            "rule 6",
        ),
        (
            |r| r.spa_origins = strs(&["https://www.acme.com"]),
            "spa_origins[0]",
            "mixed content",
        ),
        (
            |r| r.csrf.trusted_origins = strs(&["https://*.acme.com"]),
            "csrf.trusted_origins[0]",
            "mixed content",
        ),
        (
            |r| r.csrf.trusted_origins = strs(&["http://a.test/"]),
            "csrf.trusted_origins[0]",
            "trailing /",
        ),
        (
            |r| {
                r.public_url = Some("http://api.acme.test".into());
                r.session.same_site = Some("none".into())
            },
            "session.same_site",
            "rule 5",
        ),
        (
            |r| r.session.same_site = Some("sometimes".into()),
            "session.same_site",
            "lax, strict or none",
        ),
        (
            |r| {
                acme(r);
                r.session.cookie_domain = Some("www.acme.com".into())
            },
            "session.cookie_domain",
            "does not cover",
        ),
        (
            |r| {
                r.public_url = Some("https://acme-api.fly.dev".into());
                r.session.cookie_domain = Some("fly.dev".into())
            },
            "session.cookie_domain",
            "public suffix",
        ),
        (
            |r| {
                acme(r);
                r.session.cookie_domain = Some("com".into())
            },
            "session.cookie_domain",
            "public suffix",
        ),
        (
            |r| r.cors.allow_headers.push("*".into()),
            "cors.allow_headers",
            "allows nothing",
        ),
        (
            |r| r.cors.allow_methods = strs(&["*"]),
            "cors.allow_methods",
            "allows nothing",
        ),
        (
            |r| r.cors.expose_headers = strs(&["*"]),
            "cors.expose_headers",
            "allows nothing",
        ),
        (
            |r| r.cors.allow_methods.clear(),
            "cors.allow_methods",
            "is empty",
        ),
        (
            |r| r.cors.allow_methods = strs(&["GE T"]),
            "cors.allow_methods[0]",
            "not an HTTP method",
        ),
        (
            |r| r.cors.allow_headers = strs(&["content-type", "bad header"]),
            "cors.allow_headers[1]",
            "not a header name",
        ),
        (
            |r| r.cors.max_age = RawDuration::Text("soon".into()),
            "cors.max_age",
            "not a duration",
        ),
        (
            |r| r.cors.paths = strs(&["auth"]),
            "cors.paths[0]",
            "starting with /",
        ),
        (
            |r| r.tokens.default_expiry_days = 0,
            "tokens.default_expiry_days",
            "at least 1",
        ),
        (
            |r| r.tokens.max_expiry_days = 10,
            "tokens.default_expiry_days",
            "caps it",
        ),
        (
            |r| r.tokens.per_user_limit = 0,
            "tokens.per_user_limit",
            "at least 1",
        ),
        (
            |r| r.public_url = Some("api.acme.com".into()),
            "public_url",
            "missing scheme",
        ),
    ];
    for (tweak, key, why) in cases {
        let mut raw = RawConfig::default();
        tweak(&mut raw);
        let Err(ConfigError::Invalid(problems)) = raw.validate() else {
            panic!("{key}: must be invalid")
        };
        assert!(
            problems
                .iter()
                .any(|p| p.key == key && p.message.contains(why)),
            "want {key} / {why:?}, got {problems:#?}"
        );
    }
}

#[test]
fn every_start_up_warning_is_said() {
    let cases: Vec<(Tweak, &str)> = vec![
        (
            |r| {
                acme(r);
                r.spa_origins = strs(&["https://app.other.com"])
            },
            "SameSite=None; Secure; Partitioned",
        ),
        (
            |r| {
                acme(r);
                r.spa_origins = strs(&["https://app.other.com"])
            },
            "Safari",
        ),
        (
            |r| {
                acme(r);
                r.spa_origins = strs(&["http://localhost:3000"])
            },
            "plain http while public_url is https",
        ),
        (
            |r| {
                acme(r);
                r.spa_origins = strs(&["https://api.acme.com"])
            },
            "unnecessary",
        ),
        (
            |r| {
                acme(r);
                r.session.same_site = Some("strict".into())
            },
            "e-mail link",
        ),
        (
            |r| {
                acme(r);
                r.session.same_site = Some("lax".into());
                r.spa_origins = strs(&["https://app.other.com"])
            },
            "never sent",
        ),
        (
            |r| {
                acme(r);
                r.session.cookie_domain = Some("acme.com".into())
            },
            "every subdomain",
        ),
        (
            |r| r.spa_origins = strs(&["http://www.acme.test"]),
            "plain-http loopback",
        ),
        (
            |r| r.cors.max_age = RawDuration::Text("3h".into()),
            "2 hours",
        ),
        (|r| r.cors.allow_credentials = false, "rule 3"),
        (
            |r| r.cors.allow_headers = strs(&["content-type"]),
            "lacks x-csrf-token",
        ),
        (|r| r.debug_endpoint = true, "/auth/_debug"),
        (
            |r| {
                acme(r);
                r.debug_endpoint = true
            },
            "turn it off",
        ),
        (|_| {}, "without Secure"),
        (
            |r| r.public_url = Some("http://api.acme.test".into()),
            "travels in clear",
        ),
        (|r| r.auth.min_password_length = 6, "below 8"),
    ];
    for (tweak, want) in cases {
        let mut raw = RawConfig::default();
        tweak(&mut raw);
        let c = raw
            .validate()
            .unwrap_or_else(|e| panic!("{want}: must be valid: {e}"));
        assert!(
            c.warnings.iter().any(|w| w.contains(want)),
            "want {want:?} in {:#?}",
            c.warnings
        );
    }
}
