//! Tests of the assembled configuration: defaults, every key's problems and warnings, the
//! origins-derived cookie, CORS and CSRF.

mod startup;

use super::*;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};

#[test]
fn hash_memory_budget_must_hold_one_hash() {
    let mut raw = RawConfig::default();
    raw.auth.hash_memory_budget = "10MiB".into();
    assert!(
        matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p.iter().any(|p| p.key == "auth.hash_memory_budget"))
    );
    let c = RawConfig::default().validate().expect("defaults");
    assert_eq!(c.hash_memory_budget, 256 << 20);
    assert_eq!(c.reauth_window, Duration::from_secs(600));
}

#[test]
fn start_up_traps_are_warned_about() {
    let warnings = |tweak: fn(&mut RawConfig)| {
        let mut raw = RawConfig::default();
        tweak(&mut raw);
        raw.validate().expect("valid").warnings
    };
    let said = |w: &[String], what: &str| w.iter().any(|w| w.contains(what));
    // Every interface without public_url: the container trap.
    let w = warnings(|r| r.listen = "0.0.0.0:8000".into());
    assert!(said(&w, "public_url is unset"), "{w:?}");
    let w = warnings(|r| {
        r.listen = "0.0.0.0:8000".into();
        r.public_url = Some("https://api.acme.test".into());
    });
    assert!(!said(&w, "public_url is unset"), "{w:?}");
    // A port chosen at start-up cannot be the public URL's.
    let w = warnings(|r| r.listen = "127.0.0.1:0".into());
    assert!(said(&w, "port 0"), "{w:?}");
    // https without secret_key: unsealed TOTP secrets, devices forgotten at restart.
    let w = warnings(|r| r.public_url = Some("https://api.acme.test".into()));
    assert!(said(&w, "secret_key is unset"), "{w:?}");
    assert!(!said(&warnings(|_| {}), "secret_key is unset"));
}

#[test]
fn clear_site_data_is_sent_only_where_browsers_honour_it() {
    for (url, sent) in [
        ("http://localhost:8000", true),
        ("http://127.0.0.1:8000", true),
        ("https://api.acme.test", true),
        // Rule 13: ignored on plain http elsewhere, and the cookie deletion is lost with it.
        ("http://api.acme.test:8000", false),
    ] {
        let raw = RawConfig {
            public_url: Some(url.into()),
            ..RawConfig::default()
        };
        let c = raw.validate().expect("valid");
        assert_eq!(c.clear_site_data, sent, "{url}");
    }
    let mut raw = RawConfig::default();
    raw.session.clear_site_data = false;
    assert!(!raw.validate().expect("valid").clear_site_data);
}

#[test]
fn defaults_are_valid_and_safe() {
    let c = RawConfig::default().validate().expect("defaults validate");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.public_origin.to_string(), "http://localhost:8000");
    assert_eq!(c.store, StoreKind::CachedSqlite);
    assert!(!c.session.cookie.secure);
    assert_eq!(c.session.cookie.name, "vestibule_session");
    assert_eq!(c.session.idle_timeout, Duration::from_secs(14 * 86400));
    assert!(!c.signup);
    assert!(c.warnings.iter().any(|w| w.contains("without Secure")));
}

#[test]
fn session_store_takes_names_redis_urls_and_cluster_nodes() {
    let with = |store: RawStore, tweak: fn(&mut RawSession)| {
        let mut raw = RawConfig::default();
        raw.session.store = store;
        tweak(&mut raw.session);
        raw.validate()
    };
    let c = with(RawStore::One("redis://127.0.0.1:6379/0".into()), |_| {}).expect("valid");
    assert_eq!(c.store, StoreKind::CachedRedis);
    let redis = c.redis.expect("redis config");
    assert_eq!(redis.urls, vec!["redis://127.0.0.1:6379/0".to_owned()]);
    assert!(!redis.cluster);
    assert_eq!(redis.timeout, Duration::from_secs(2));
    assert_eq!(redis.prefix, "vestibule:");
    let c = with(RawStore::One("redis://h:1".into()), |s| {
        s.redis_cache = false;
        s.store_timeout = "250ms".into();
    })
    .expect("valid");
    assert_eq!(c.store, StoreKind::Redis);
    assert_eq!(c.store_timeout, Duration::from_millis(250));
    // A list, or commas (the environment), names cluster nodes.
    for store in [
        RawStore::Nodes(vec!["redis://a:7000".into(), "redis://b:7001".into()]),
        RawStore::One("redis://a:7000, redis://b:7001".into()),
    ] {
        let redis = with(store, |_| {}).expect("valid").redis.expect("redis");
        assert!(redis.cluster);
        assert_eq!(redis.urls.len(), 2);
    }
    let c = with(RawStore::One("sqlite".into()), |_| {}).expect("valid");
    assert_eq!((c.store, c.redis), (StoreKind::Sqlite, None));
    for (store, tweak, key) in [
        (
            RawStore::One("mongo".into()),
            (|_| {}) as fn(&mut RawSession),
            "session.store",
        ),
        (
            RawStore::One("http://h:6379".into()),
            |_| {},
            "session.store",
        ),
        (RawStore::Nodes(vec![]), |_| {}, "session.store"),
        (
            RawStore::One("redis://h".into()),
            |s| s.store_timeout = "5ms".into(),
            "session.store_timeout",
        ),
        (
            RawStore::One("redis://h".into()),
            |s| s.redis_prefix = String::new(),
            "session.redis_prefix",
        ),
    ] {
        let Err(ConfigError::Invalid(problems)) = with(store.clone(), tweak) else {
            panic!("{store:?} accepted");
        };
        assert!(problems.iter().any(|p| p.key == key), "{problems:?}");
    }
}

#[test]
fn https_public_url_makes_a_host_prefixed_secure_cookie() {
    let raw = RawConfig {
        public_url: Some("https://api.acme.com".into()),
        ..RawConfig::default()
    };
    let c = raw.validate().expect("valid");
    assert!(c.session.cookie.secure);
    assert_eq!(c.session.cookie.name, "__Host-vestibule_session");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let mut raw = RawConfig {
        listen: "nope".into(),
        ..RawConfig::default()
    };
    raw.session.idle_timeout = Some("forever".into());
    raw.csrf.trusted_origins = vec![
        "https://*.acme.com".into(),
        "http://localhost:3000/app".into(),
    ];
    let Err(ConfigError::Invalid(problems)) = raw.validate() else {
        panic!("must be invalid")
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"listen"));
    assert!(keys.contains(&"session.idle_timeout"));
    assert!(keys.contains(&"csrf.trusted_origins[0]"));
    assert!(keys.contains(&"csrf.trusted_origins[1]"));
}

#[test]
fn idle_longer_than_absolute_is_refused() {
    let mut raw = RawConfig::default();
    raw.session.idle_timeout = Some("40d".into());
    assert!(
        matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p[0].key == "session.idle_timeout")
    );
}

pub(super) type Tweak = fn(&mut RawConfig);

/// A production-like configuration: https, with the secret production needs.
pub(super) fn acme(raw: &mut RawConfig) {
    raw.public_url = Some("https://api.acme.com".into());
    raw.secret_key = Some(SecretString("k".repeat(40)));
}

pub(super) fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn session_profiles_set_lifetimes_and_strict_same_site_where_possible() {
    let c = RawConfig::default().validate().expect("valid");
    assert_eq!(c.session.idle_timeout, Duration::from_secs(14 * 86400));
    assert_eq!(c.session.absolute_timeout, Duration::from_secs(30 * 86400));

    let mut raw = RawConfig::default();
    acme(&mut raw);
    raw.spa_origins = strs(&["https://app.acme.com"]);
    raw.session.profile = "strict".into();
    let c = raw.clone().validate().expect("valid");
    assert_eq!(c.session.idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(c.session.absolute_timeout, Duration::from_secs(12 * 3600));
    assert_eq!(c.session.cookie.same_site, cookie::SameSite::Strict);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // An explicit timeout still wins over the preset.
    raw.session.idle_timeout = Some("10m".into());
    let c = raw.clone().validate().expect("valid");
    assert_eq!(c.session.idle_timeout, Duration::from_secs(600));

    // A cross-site SPA keeps the cookie it needs; the profile says why it is not Strict.
    raw.spa_origins = strs(&["https://acme-app.net"]);
    let c = raw.clone().validate().expect("valid");
    assert_eq!(c.session.cookie.same_site, cookie::SameSite::None);
    assert!(
        c.warnings.iter().any(|w| w.contains("session.profile")),
        "{:?}",
        c.warnings
    );

    raw.session.profile = "paranoid".into();
    assert!(
        matches!(raw.validate(), Err(ConfigError::Invalid(p)) if p.iter().any(|p| p.key == "session.profile"))
    );
}

#[test]
fn cookie_prefix_follows_secure_and_domain() {
    let mut raw = RawConfig::default();
    acme(&mut raw);
    let c = raw.clone().validate().expect("valid");
    assert_eq!(c.session.cookie.name, "__Host-vestibule_session");
    raw.session.cookie_domain = Some("acme.com".into());
    let c = raw.clone().validate().expect("valid");
    assert_eq!(c.session.cookie.name, "__Secure-vestibule_session");
    assert_eq!(c.session.cookie.domain.as_deref(), Some("acme.com"));
    assert!(c.session.cookie.secure);
    // Plain-http localhost: browsers would drop a prefixed cookie set without Secure.
    let raw = RawConfig {
        public_url: Some("http://localhost:8000".into()),
        ..RawConfig::default()
    };
    let c = raw.validate().expect("valid");
    assert_eq!(c.session.cookie.name, "vestibule_session");
    assert!(!c.session.cookie.secure);
}

#[test]
fn one_declaration_derives_cors_csrf_and_cookie() {
    let mut raw = RawConfig::default();
    acme(&mut raw);
    raw.spa_origins = strs(&["https://www.acme.com", "https://*.preview.acme.com"]);
    let c = raw.validate().expect("valid");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let cookie = &c.session.cookie;
    assert_eq!(cookie.name, "__Host-vestibule_session");
    assert!(cookie.secure && cookie.domain.is_none());
    assert_eq!(cookie.same_site, cookie::SameSite::Lax);
    assert!(!c.origins.cookie().partitioned);
    assert_eq!(
        c.origins.session_cookie().name,
        cookie.name,
        "one derivation"
    );
    let cors: Vec<String> = c
        .origins
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
    let csrf: Vec<String> = c
        .origins
        .csrf_trusted_origins()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(csrf, ["https://www.acme.com", "https://*.preview.acme.com"]);
    assert!(c.cors.allow_credentials);
    assert_eq!(c.cors.max_age, Duration::from_secs(600));
    assert_eq!(c.tokens, TokenSettings::default());
    assert_eq!(c.tokens.default_expiry, Duration::from_secs(30 * 86400));
    assert!(!c.debug_endpoint);
    assert_eq!(c.origins.cookie_name(), "__Host-vestibule_session");
}

#[test]
fn cross_site_spa_gets_a_partitioned_none_cookie() {
    let mut raw = RawConfig::default();
    acme(&mut raw);
    raw.spa_origins = strs(&["https://acme-web.vercel.app"]);
    let c = raw.validate().expect("valid");
    assert_eq!(c.session.cookie.same_site, cookie::SameSite::None);
    assert!(c.session.cookie.secure);
    assert!(c.origins.cookie().partitioned);
    assert!(c.warnings.iter().any(|w| w.contains("same-origin proxy")));
}

#[test]
fn lists_and_durations_read_from_toml_and_csv() {
    let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(
            "spa_origins = \"https://www.acme.com, https://*.preview.acme.com\"\n\
             debug_endpoint = true\n\
             [session]\nsame_site = \"Strict\"\n\
             [cors]\nmax_age = 60\nallow_headers = \"content-type,x-csrf-token,x-custom\"\npaths = [\"/auth\"]\n\
             [tokens]\ndefault_expiry_days = 7\n",
        ))
        .extract()
        .expect("reads");
    assert_eq!(raw.spa_origins.len(), 2);
    assert_eq!(raw.cors.max_age, RawDuration::Seconds(60));
    assert_eq!(raw.session.same_site.as_deref(), Some("Strict"));
    let mut raw = raw;
    acme(&mut raw);
    let c = raw.validate().expect("valid");
    assert_eq!(c.session.cookie.same_site, cookie::SameSite::Strict);
    assert_eq!(c.cors.max_age, Duration::from_secs(60));
    assert_eq!(c.cors.paths, ["/auth"]);
    assert_eq!(c.cors.allow_headers.len(), 3);
    assert!(c.debug_endpoint);
    assert_eq!(c.tokens.default_expiry, Duration::from_secs(7 * 86400));
    let text: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string("[cors]\nmax_age = \"2m\"\n"))
        .extract()
        .expect("reads");
    assert_eq!(
        text.validate().expect("valid").cors.max_age,
        Duration::from_secs(120)
    );
}

#[test]
fn email_keys_are_checked_and_the_transport_derived() {
    let problem_keys = |tweak: fn(&mut RawConfig)| -> Vec<String> {
        let mut raw = RawConfig::default();
        tweak(&mut raw);
        match raw.validate() {
            Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| p.key).collect(),
            Ok(_) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
    };
    let transport = |tweak: fn(&mut RawConfig)| {
        let mut raw = RawConfig::default();
        tweak(&mut raw);
        raw.validate().expect("valid").email.transport
    };
    use crate::email::TransportKind;
    assert_eq!(transport(|_| {}), TransportKind::Off);
    assert_eq!(transport(|r| r.demo = true), TransportKind::Log);
    assert!(matches!(
        transport(|r| r.email.smtp_url = Some(SecretString("smtps://u:p@mail.acme.test".into()))),
        TransportKind::Smtp(_)
    ));
    assert_eq!(
        problem_keys(|r| r.email.smtp_url = Some(SecretString("http://mail".into()))),
        ["email.smtp_url"]
    );
    assert_eq!(
        problem_keys(|r| r.email.transport = Some("smtp".into())),
        ["email.smtp_url"]
    );
    assert_eq!(
        problem_keys(|r| r.email.transport = Some("pigeon".into())),
        ["email.transport"]
    );
    assert_eq!(
        problem_keys(|r| r.email.from = "not a sender".into()),
        ["email.from"]
    );
    assert_eq!(
        problem_keys(|r| r.email.link_base = Some("ftp://x".into())),
        ["email.link_base"]
    );
    assert_eq!(
        problem_keys(|r| r.email.retry_initial = "soon".into()),
        ["email.retry_initial"]
    );
    // Verified addresses need a way to send the link.
    assert_eq!(
        problem_keys(|r| r.auth.require_verified_email = true),
        ["auth.require_verified_email"]
    );
    assert!(
        problem_keys(|r| {
            r.auth.require_verified_email = true;
            r.demo = true;
        })
        .is_empty()
    );
    // The smtp URL holds a password: never in Debug.
    let mut raw = RawConfig::default();
    raw.email.smtp_url = Some(SecretString("smtps://u:hunter2@mail.acme.test".into()));
    assert!(!format!("{:?}", raw.validate().expect("valid")).contains("hunter2"));
}

/// `[[oidc.provider]]` `client_auth`: each method asks for its own credential, and a
/// `private_key_jwt` key must be readable and usable when the configuration is loaded (not at the
/// first login).
#[test]
fn oidc_client_auth_methods_need_their_credentials() {
    use crate::auth::oidc::{ClientAuth, RawProvider};
    let dir = tempfile::tempdir().expect("dir");
    let rsa = format!(
        "{}/tests/it/fixtures/oidc-test-rsa.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(
        &not_a_key,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let not_a_key = not_a_key.display().to_string();
    let missing = dir.path().join("missing.pem").display().to_string();
    let with = |tweak: &dyn Fn(&mut RawProvider)| {
        let mut raw = RawConfig::default();
        let mut p = RawProvider {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            client_id: "vestibule".into(),
            ..Default::default()
        };
        tweak(&mut p);
        raw.oidc.provider.push(p);
        raw.validate()
    };
    let problems = |tweak: &dyn Fn(&mut RawProvider)| -> Vec<(String, String)> {
        match with(tweak) {
            Err(ConfigError::Invalid(p)) => p.into_iter().map(|p| (p.key, p.message)).collect(),
            Ok(_) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
    };
    let said = |tweak: &dyn Fn(&mut RawProvider), key: &str, why: &str| {
        let got = problems(tweak);
        assert!(
            got.iter()
                .any(|(k, m)| k == &format!("oidc.provider[0].{key}") && m.contains(why)),
            "want {key} / {why:?}, got {got:#?}"
        );
    };
    let secret = |p: &mut RawProvider| p.client_secret = Some(SecretString("s3cret".into()));

    // The default, client_secret_basic, and client_secret_post need the secret.
    said(&|_| {}, "client_secret", "private_key_jwt");
    said(
        &|p| p.client_auth = "client_secret_post".into(),
        "client_secret",
        "is required",
    );
    let c = with(&|p| {
        secret(p);
        p.client_auth = "client_secret_post".into();
    })
    .expect("valid");
    assert!(matches!(
        c.oidc.providers[0].client_auth,
        ClientAuth::SecretPost
    ));
    let c = with(&secret).expect("valid");
    assert!(matches!(
        c.oidc.providers[0].client_auth,
        ClientAuth::SecretBasic
    ));
    said(
        &|p| {
            secret(p);
            p.client_auth = "client_secret_jwt".into();
        },
        "client_auth",
        "private_key_jwt",
    );
    // A key with a secret method is a mistake, not a silent no-op.
    said(
        &|p| {
            secret(p);
            p.private_key_file = Some(rsa.clone());
        },
        "private_key_file",
        "only with client_auth = \"private_key_jwt\"",
    );
    said(
        &|p| {
            secret(p);
            p.key_id = Some("k1".into());
        },
        "key_id",
        "only with",
    );

    // private_key_jwt: no secret, a key file that reads and parses.
    let jwt = |p: &mut RawProvider| p.client_auth = "private_key_jwt".into();
    said(&jwt, "private_key_file", "is required");
    said(
        &|p| {
            jwt(p);
            p.private_key_file = Some(missing.clone());
        },
        "private_key_file",
        "cannot read",
    );
    said(
        &|p| {
            jwt(p);
            p.private_key_file = Some(not_a_key.clone());
        },
        "private_key_file",
        "no unencrypted private key",
    );
    said(
        &|p| {
            jwt(p);
            p.private_key_file = Some(rsa.clone());
            p.key_id = Some(String::new());
        },
        "key_id",
        "1-256 characters",
    );
    let ok = |p: &mut RawProvider| {
        jwt(p);
        p.private_key_file = Some(rsa.clone());
        p.key_id = Some("k1".into());
    };
    let c = with(&ok).expect("valid without a secret");
    let ClientAuth::PrivateKeyJwt(key) = &c.oidc.providers[0].client_auth else {
        panic!("private_key_jwt");
    };
    assert_eq!(key.alg(), "RS256");
    assert!(c.oidc.providers[0].client_secret.is_none());
    assert!(
        !format!("{c:?}").contains("MII"),
        "no key material in Debug"
    );
    // HMAC ID tokens are verified with the client secret: not without one.
    said(
        &|p| {
            ok(p);
            p.id_token_algs = vec!["HS256".into()];
        },
        "id_token_algs",
        "set client_secret",
    );
    with(&|p| {
        ok(p);
        secret(p);
        p.id_token_algs = vec!["HS256".into()];
    })
    .expect("HS256 with a secret");
}
