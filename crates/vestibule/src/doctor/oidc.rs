//! The OpenID Connect checks of a configuration (`vestibule doctor --config`): each provider's
//! discovery document fetched now (the one online part), the token endpoint's client
//! authentication it accepts, its callback, and whether the page's origin may be a `return_to`. The verdicts are the pure rules of [`rules::oidc`](super::rules::oidc).

use std::time::Duration;

use super::rules::Finding;
use super::rules::oidc::{
    Discovery, TokenEndpointAuth, callback, client_auth, discovery, discovery_url, return_to,
};
use crate::auth::oidc::{ClientAuth, ProviderSettings};
use crate::origin::Origin;
use crate::origins::OriginsPolicy;

/// Fetches `issuer`'s discovery document as the relying party would (no redirects, a bounded
/// wait).
pub async fn fetch_discovery(issuer: &str, timeout: Duration) -> Discovery {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Discovery::Unreachable(e.to_string()),
    };
    match client.get(discovery_url(issuer)).send().await {
        Err(e) => Discovery::Unreachable(e.to_string()),
        Ok(res) => {
            let status = res.status().as_u16();
            let doc = res.json::<serde_json::Value>().await.ok();
            let field = |name: &str| doc.as_ref().and_then(|v| v.get(name));
            let strings = |name: &str| {
                field(name).and_then(|v| v.as_array()).map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
            };
            Discovery::Answered {
                status,
                issuer: field("issuer").and_then(|i| i.as_str()).map(str::to_owned),
                token_auth: TokenEndpointAuth {
                    methods: strings("token_endpoint_auth_methods_supported"),
                    signing_algs: strings("token_endpoint_auth_signing_alg_values_supported"),
                },
            }
        }
    }
}

/// Every provider's findings (discovery, callback), then the page's `return_to` when a page is
/// given.
pub async fn check(
    providers: &[ProviderSettings],
    public: &Origin,
    public_url_set: bool,
    policy: &OriginsPolicy,
    page: Option<&Origin>,
    timeout: Duration,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in providers {
        let answer = fetch_discovery(&p.issuer, timeout).await;
        out.push(discovery(&p.name, &p.issuer, &answer));
        let alg = match &p.client_auth {
            ClientAuth::PrivateKeyJwt(key) => Some(key.alg()),
            ClientAuth::SecretBasic | ClientAuth::SecretPost => None,
        };
        out.extend(client_auth(&p.name, p.client_auth.name(), alg, &answer));
        out.push(callback(&p.name, public, public_url_set));
    }
    if !providers.is_empty()
        && let Some(page) = page
    {
        out.push(return_to(page, policy));
    }
    out
}
