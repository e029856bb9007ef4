//! The OpenID Connect rules: pure functions, like the cookie rules, over what the configuration
//! says and what a provider's issuer answered (the fetch is the caller's: `doctor::oidc`).
//! `config check` says the non-passing ones as warnings; `vestibule doctor --config` lists them.

use super::{Finding, Status};
use crate::origin::Origin;
use crate::origins::OriginsPolicy;

/// What a provider's discovery document request (`{issuer}/.well-known/openid-configuration`)
/// came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// No answer (connection refused, timeout, TLS): the reason.
    Unreachable(String),
    /// An HTTP answer: its status, and the document's `issuer` when it was JSON with one.
    Answered {
        /// The HTTP status.
        status: u16,
        /// The document's `issuer`.
        issuer: Option<String>,
        /// What the document says of client authentication at the token endpoint.
        token_auth: TokenEndpointAuth,
    },
}

/// What a discovery document says of client authentication at the token endpoint; `None` where
/// it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenEndpointAuth {
    /// `token_endpoint_auth_methods_supported` (absent means `client_secret_basic` only).
    pub methods: Option<Vec<String>>,
    /// `token_endpoint_auth_signing_alg_values_supported`: the JWS algorithms of client
    /// assertions (`private_key_jwt`).
    pub signing_algs: Option<Vec<String>>,
}

/// The `client_auth` methods Vestibule has, in the order a fix suggests them.
const METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0, section 4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// `oidc-discovery`: the provider answers its discovery document, and the document names the
/// configured issuer (Vestibule refuses any other: no login would work).
pub fn discovery(provider: &str, issuer: &str, answer: &Discovery) -> Finding {
    let url = discovery_url(issuer);
    let key = format!("oidc.provider \"{provider}\" issuer");
    match answer {
        Discovery::Unreachable(why) => Finding::fail(
            "oidc-discovery",
            format!("{key} does not answer its discovery document: every login through it fails with oidc_provider_unavailable"),
        )
        .evidence(format!("GET {url}: {why}"))
        .fix("check the issuer URL (no trailing path the provider does not use) and that this host can reach it"),
        Discovery::Answered { status, .. } if *status != 200 => Finding::fail(
            "oidc-discovery",
            format!("{key}: the discovery document answers HTTP {status}, not 200"),
        )
        .evidence(format!("GET {url}: {status}"))
        .fix("the issuer is the URL the provider documents as its issuer (e.g. https://accounts.google.com)"),
        Discovery::Answered { issuer: None, .. } => Finding::fail(
            "oidc-discovery",
            format!("{key}: the discovery answer is not a document with an issuer"),
        )
        .evidence(format!("GET {url}: 200 without an \"issuer\""))
        .fix("the issuer is the URL the provider documents as its issuer"),
        Discovery::Answered {
            issuer: Some(found),
            ..
        } if found != issuer => Finding::fail(
            "oidc-discovery",
            format!("{key}: the discovery document names another issuer, which Vestibule refuses (mix-up defence)"),
        )
        .evidence(format!("configured {issuer:?}, the document says {found:?}"))
        .fix(format!("set issuer = {found:?}")),
        Discovery::Answered { .. } => Finding::pass(
            "oidc-discovery",
            format!("{key} answers its discovery document, naming itself"),
        )
        .evidence(format!("GET {url}: 200")),
    }
}

/// `oidc-client-auth`: the provider accepts the configured `client_auth` method (its
/// `token_endpoint_auth_methods_supported`, which OpenID Connect Discovery says means
/// `client_secret_basic` alone when absent) and, for `private_key_jwt`, the key's algorithm
/// (`alg`). Otherwise every login fails at the code exchange with 502 `oidc_client_rejected`,
/// which this says before the first user meets it. `None` when there is no document to read
/// (`oidc-discovery` says why).
pub fn client_auth(
    provider: &str,
    method: &str,
    alg: Option<&str>,
    answer: &Discovery,
) -> Option<Finding> {
    let Discovery::Answered {
        status: 200,
        issuer: Some(_),
        token_auth,
    } = answer
    else {
        return None;
    };
    let key = format!("oidc.provider \"{provider}\"");
    let Some(methods) = &token_auth.methods else {
        if method == "client_secret_basic" {
            return Some(Finding::pass(
                "oidc-client-auth",
                format!(
                    "{key}: the provider lists no token endpoint methods, which means client_secret_basic, the one configured"
                ),
            ));
        }
        return Some(
            Finding::warn(
                "oidc-client-auth",
                format!("{key}: client_auth = \"{method}\", but the provider's discovery document lists no token endpoint methods, which means client_secret_basic alone: logins may fail with oidc_client_rejected"),
            )
            .evidence("no token_endpoint_auth_methods_supported in the discovery document")
            .fix(format!("check that the client is registered at the provider for {method}, or set client_auth = \"client_secret_basic\"")),
        );
    };
    let listed = format!(
        "token_endpoint_auth_methods_supported: {}",
        methods.join(", ")
    );
    if !methods.iter().any(|m| m == method) {
        let usable: Vec<&str> = METHODS
            .into_iter()
            .filter(|m| methods.iter().any(|x| x == m))
            .collect();
        let fix = match usable.first() {
            Some(first) => format!(
                "set client_auth = \"{first}\" (with its credential) and register the client at the provider for it"
            ),
            None => format!(
                "the provider offers none of the methods Vestibule has ({})",
                METHODS.join(", ")
            ),
        };
        return Some(
            Finding::fail(
                "oidc-client-auth",
                format!("{key}: client_auth = \"{method}\" is not a method the provider accepts: every login through it fails with oidc_client_rejected"),
            )
            .evidence(listed)
            .fix(fix),
        );
    }
    if let (Some(alg), Some(algs)) = (alg, &token_auth.signing_algs)
        && !algs.iter().any(|a| a == alg)
    {
        return Some(
            Finding::fail(
                "oidc-client-auth",
                format!("{key}: the provider does not accept {alg} client assertions (private_key_jwt): every login through it fails with oidc_client_rejected"),
            )
            .evidence(format!("token_endpoint_auth_signing_alg_values_supported: {}", algs.join(", ")))
            .fix("use a private_key_file of an algorithm the provider lists: an RSA key signs RS256, an EC P-256 key ES256"),
        );
    }
    let with = alg.map(|a| format!(" with {a}")).unwrap_or_default();
    Some(
        Finding::pass(
            "oidc-client-auth",
            format!("{key}: the provider accepts {method}{with}"),
        )
        .evidence(listed),
    )
}

/// `oidc-callback`: the redirect URI Vestibule sends is `{public_url}/auth/oidc/{name}/callback`;
/// the provider redirects only to the one registered, exactly. Without `public_url` it is the
/// listen address's, which a provider rarely has; over plain http off loopback the code travels
/// in clear.
pub fn callback(provider: &str, public: &Origin, public_url_set: bool) -> Finding {
    let url = format!("{public}/auth/oidc/{provider}/callback");
    if public.scheme() == "http" && !public.is_loopback() {
        return Finding::fail(
            "oidc-callback",
            format!("oidc.provider \"{provider}\": the callback {url} is plain http off loopback: the authorization code would travel in clear (and providers refuse it)"),
        )
        .evidence(format!("public_url = {public}"))
        .fix("serve Vestibule over https and set public_url to that https URL");
    }
    if !public_url_set {
        return Finding::warn(
            "oidc-callback",
            format!("oidc.provider \"{provider}\": public_url is unset, so the callback is {url} (from the listen address); the provider redirects only to the URL registered there"),
        )
        .evidence("public_url unset")
        .fix(format!("set public_url to the URL browsers use, and register {{public_url}}/auth/oidc/{provider}/callback at the provider"));
    }
    Finding::pass(
        "oidc-callback",
        format!("oidc.provider \"{provider}\": register {url} as the redirect URI at the provider"),
    )
    .evidence(format!("public_url = {public}"))
}

/// `oidc-return-to`: a login started from `page` comes back there only if the origins policy
/// allows it (`public_url`'s origin or an allowed SPA origin); any other is refused with
/// `oidc_return_to_refused` (no open redirect).
pub fn return_to(page: &Origin, policy: &OriginsPolicy) -> Finding {
    if page == policy.public_origin() || policy.is_allowed_spa(page) {
        return Finding::pass(
            "oidc-return-to",
            format!("a provider login started on {page} may return there"),
        );
    }
    Finding::fail(
        "oidc-return-to",
        format!("a provider login with return_to on {page} is refused (oidc_return_to_refused): the origin is neither public_url's nor an allowed SPA origin"),
    )
    .evidence(format!("return_to origin {page}"))
    .fix(format!("add \"{page}\" to spa_origins, or return to a path on public_url"))
}

impl Finding {
    /// Whether this finding does not pass (said as a warning by `config check`).
    pub fn is_problem(&self) -> bool {
        self.status != Status::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origins::{CookieOverrides, OriginPattern};

    fn origin(s: &str) -> Origin {
        Origin::parse(s).expect("origin")
    }

    #[test]
    fn discovery_fails_without_an_answer_a_200_or_the_configured_issuer() {
        let issuer = "https://idp.example";
        let fail = |a: Discovery| discovery("corp", issuer, &a).status;
        assert_eq!(
            fail(Discovery::Unreachable("connection refused".into())),
            Status::Fail
        );
        assert_eq!(
            fail(Discovery::Answered {
                status: 404,
                issuer: None,
                token_auth: TokenEndpointAuth::default(),
            }),
            Status::Fail
        );
        assert_eq!(
            fail(Discovery::Answered {
                status: 200,
                issuer: None,
                token_auth: TokenEndpointAuth::default(),
            }),
            Status::Fail
        );
        let other = discovery(
            "corp",
            issuer,
            &Discovery::Answered {
                status: 200,
                issuer: Some("https://idp.example/".into()),
                token_auth: TokenEndpointAuth::default(),
            },
        );
        assert_eq!(other.status, Status::Fail);
        assert_eq!(
            other.fix.as_deref(),
            Some("set issuer = \"https://idp.example/\"")
        );
        let ok = discovery(
            "corp",
            issuer,
            &Discovery::Answered {
                status: 200,
                issuer: Some(issuer.into()),
                token_auth: TokenEndpointAuth::default(),
            },
        );
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(
            discovery_url("https://idp.example/"),
            "https://idp.example/.well-known/openid-configuration"
        );
    }

    fn answered(methods: Option<&[&str]>, algs: Option<&[&str]>) -> Discovery {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        Discovery::Answered {
            status: 200,
            issuer: Some("https://idp.example".into()),
            token_auth: TokenEndpointAuth {
                methods: methods.map(owned),
                signing_algs: algs.map(owned),
            },
        }
    }

    #[test]
    fn client_auth_must_be_a_method_and_algorithm_the_provider_accepts() {
        let status =
            |method, alg, a: &Discovery| client_auth("corp", method, alg, a).map(|f| f.status);
        // No document: nothing to say (oidc-discovery fails).
        let none = Discovery::Unreachable("refused".into());
        assert_eq!(status("client_secret_basic", None, &none), None);
        // Nothing listed: client_secret_basic alone, by the specification.
        let silent = answered(None, None);
        assert_eq!(
            status("client_secret_basic", None, &silent),
            Some(Status::Pass)
        );
        assert_eq!(
            status("client_secret_post", None, &silent),
            Some(Status::Warn)
        );
        // A method the provider does not list: every login would fail.
        let post_only = answered(Some(&["client_secret_post", "tls_client_auth"]), None);
        let f = client_auth("corp", "client_secret_basic", None, &post_only).expect("finding");
        assert_eq!(f.status, Status::Fail);
        assert!(f.summary.contains("oidc_client_rejected"), "{}", f.summary);
        assert_eq!(
            f.fix.as_deref(),
            Some(
                "set client_auth = \"client_secret_post\" (with its credential) and register the client at the provider for it"
            )
        );
        let f = client_auth(
            "corp",
            "client_secret_basic",
            None,
            &answered(Some(&["tls_client_auth"]), None),
        )
        .expect("finding");
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.fix
                .as_deref()
                .is_some_and(|x| x.contains("none of the methods")),
            "{f:?}"
        );
        assert_eq!(
            status("client_secret_post", None, &post_only),
            Some(Status::Pass)
        );
        // private_key_jwt: the key's algorithm must be listed when the provider lists them.
        let jwt = answered(Some(&["private_key_jwt"]), Some(&["RS256", "PS256"]));
        assert_eq!(
            status("private_key_jwt", Some("RS256"), &jwt),
            Some(Status::Pass)
        );
        let f = client_auth("corp", "private_key_jwt", Some("ES256"), &jwt).expect("finding");
        assert_eq!(f.status, Status::Fail);
        assert!(f.summary.contains("ES256"), "{}", f.summary);
        let unlisted_algs = answered(Some(&["private_key_jwt"]), None);
        assert_eq!(
            status("private_key_jwt", Some("ES256"), &unlisted_algs),
            Some(Status::Pass)
        );
    }

    #[test]
    fn the_callback_needs_public_url_and_https_off_loopback() {
        let f = callback("corp", &origin("http://127.0.0.1:8000"), false);
        assert_eq!(f.status, Status::Warn, "public_url unset");
        assert!(
            f.summary
                .contains("http://127.0.0.1:8000/auth/oidc/corp/callback"),
            "{}",
            f.summary
        );
        let f = callback("corp", &origin("http://auth.example"), true);
        assert_eq!(f.status, Status::Fail, "plain http off loopback");
        let f = callback("corp", &origin("https://auth.example"), true);
        assert_eq!(f.status, Status::Pass);
        assert!(
            f.summary
                .contains("https://auth.example/auth/oidc/corp/callback")
        );
        assert!(!f.is_problem());
    }

    #[test]
    fn return_to_is_public_url_or_an_allowed_spa_origin() {
        let (policy, _) = OriginsPolicy::new(
            origin("https://api.example"),
            vec![OriginPattern::parse("https://app.example").expect("pattern")],
            vec![],
            CookieOverrides::default(),
        )
        .expect("policy");
        for ok in ["https://api.example", "https://app.example"] {
            assert_eq!(return_to(&origin(ok), &policy).status, Status::Pass, "{ok}");
        }
        for bad in ["https://evil.example", "http://app.example"] {
            let f = return_to(&origin(bad), &policy);
            assert_eq!(f.status, Status::Fail, "{bad}");
            assert!(f.summary.contains("oidc_return_to_refused"));
        }
    }
}
