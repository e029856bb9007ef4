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
    },
}

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
                issuer: None
            }),
            Status::Fail
        );
        assert_eq!(
            fail(Discovery::Answered {
                status: 200,
                issuer: None
            }),
            Status::Fail
        );
        let other = discovery(
            "corp",
            issuer,
            &Discovery::Answered {
                status: 200,
                issuer: Some("https://idp.example/".into()),
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
            },
        );
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(
            discovery_url("https://idp.example/"),
            "https://idp.example/.well-known/openid-configuration"
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
