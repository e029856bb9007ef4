//! `[[upstream]]`, `[dev]` and `[static_site]` → [`ProxyConfig`]: every value check and the
//! prefix-table checks (a prefix forwarded twice, an upstream on Vestibule's own listen address,
//! a weaker policy nested inside a stricter one, forwarded credentials), so `serve` refuses what
//! `config check` refuses.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::uri::Authority;

use super::config::*;
use crate::problem::Problem;

/// Paths Vestibule answers itself; no upstream may take them.
const RESERVED: [&str; 3] = ["/auth", "/healthz", "/readyz"];

fn duration(key: &str, text: &str, problems: &mut Vec<Problem>) -> Duration {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            problems.push(Problem {
                key: key.into(),
                message: format!("{text:?} is not a positive duration (e.g. \"5s\", \"2m\")"),
            });
            Duration::from_secs(1)
        }
    }
}

fn parse_url(key: &str, text: &str, problems: &mut Vec<Problem>) -> Option<Authority> {
    let bad = |why: &str| Problem {
        key: key.into(),
        message: format!("{text:?} {why}; write http://host:port, e.g. http://127.0.0.1:8001"),
    };
    let url = match url::Url::parse(text) {
        Ok(u) => u,
        Err(e) => {
            problems.push(bad(&format!("is not a URL ({e})")));
            return None;
        }
    };
    if url.scheme() != "http" {
        problems.push(bad(
            "is not http:// (the proxy speaks plain HTTP/1.1 to local or private backends)",
        ));
        return None;
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        problems.push(bad(
            "has a path or query (use strip_prefix to map prefixes)",
        ));
        return None;
    }
    let Some(host) = url.host_str() else {
        problems.push(bad("has no host"));
        return None;
    };
    let port = url.port_or_known_default().unwrap_or(80);
    match format!("{host}:{port}").parse::<Authority>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(bad("has an invalid host"));
            None
        }
    }
}

fn check_prefix(key: &str, prefix: &str, problems: &mut Vec<Problem>) -> bool {
    let reason = if !prefix.starts_with('/') {
        Some("must start with /".to_owned())
    } else if prefix.len() > 1 && prefix.ends_with('/') {
        Some("must not end with / (\"/api\" already matches \"/api/…\")".to_owned())
    } else if prefix.contains(['?', '#', '*', ' ', '%']) {
        Some("must be a plain path".to_owned())
    } else {
        RESERVED
            .iter()
            .find(|r| prefix == **r || prefix.starts_with(&format!("{r}/")))
            .map(|r| format!("collides with {r}, which Vestibule answers itself"))
    };
    if let Some(why) = reason {
        problems.push(Problem {
            key: key.into(),
            message: format!("{prefix:?} {why}"),
        });
        false
    } else {
        true
    }
}

/// Validates `[[upstream]]`, `[dev]` and `static_dir`, collecting every problem.
///
/// The prefix table's own mistakes are checked here too, so `serve` refuses what `config check`
/// refuses: a prefix forwarded twice, an upstream that is Vestibule's own listen address (a
/// loop); and warned about: a weaker policy nested in a stricter one, forwarded credentials,
/// `require_auth` on `/`.
pub(crate) fn validate(
    raw: &[RawUpstream],
    dev: &RawDev,
    static_dir: Option<&str>,
    listen: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> ProxyConfig {
    let mut upstreams = Vec::new();
    let mut routes: Vec<Route> = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let key = |k: &str| format!("upstream[{i}].{k}");
        routes.push(Route {
            key: format!("upstream[{i}]"),
            prefix_key: key("prefix"),
            url_key: key("url"),
            prefix: u.prefix.clone(),
            url: u.url.clone(),
            policy: u.policy,
        });
        if u.forward_session_cookie {
            warnings.push(format!("{}: the browser's Vestibule session cookie reaches this upstream, which can then act as the user anywhere; the identity headers are enough for most backends", key("forward_session_cookie")));
        }
        if u.forward_authorization && u.forward_access_token {
            problems.push(Problem {
                key: key("forward_access_token"),
                message: "cannot be combined with forward_authorization: both write Authorization"
                    .into(),
            });
        }
        if u.forward_authorization {
            warnings.push(format!("{}: clients' bearer tokens reach this upstream, which can replay them; the identity headers are enough for most backends", key("forward_authorization")));
        }
        if u.prefix == "/" && u.policy == UpstreamPolicy::RequireAuth {
            warnings.push(format!("{}: require_auth on \"/\" answers 401 to every page an anonymous visitor opens, the login page too; use anonymous_ok for the catch-all", key("policy")));
        }
        let prefix_ok = check_prefix(&key("prefix"), &u.prefix, problems);
        let authority = parse_url(&key("url"), &u.url, problems);
        let connect_timeout = duration(&key("connect_timeout"), &u.connect_timeout, problems);
        let response_timeout = duration(&key("response_timeout"), &u.response_timeout, problems);
        if let (true, Some(authority)) = (prefix_ok, authority) {
            upstreams.push(Upstream {
                prefix: u.prefix.clone(),
                authority,
                url: u.url.trim_end_matches('/').to_owned(),
                policy: u.policy,
                change_origin: u.change_origin,
                strip_prefix: u.strip_prefix,
                connect_timeout,
                response_timeout,
                forward_authorization: u.forward_authorization,
                forward_session_cookie: u.forward_session_cookie,
                identity_headers: true,
                name: u
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("the upstream for {}", u.prefix)),
                start_hint: u
                    .start_hint
                    .clone()
                    .unwrap_or_else(|| format!("start it, or fix upstream[{i}].url")),
                identity_assertion: u.identity_assertion,
                forward_access_token: u.forward_access_token,
                reload_error_page: false,
                detailed_errors: false,
            });
        }
    }
    if dev.enabled {
        for (i, entry) in dev.api.iter().enumerate() {
            let key = format!("dev.api[{i}]");
            let Some((prefix, url)) = entry.split_once('=') else {
                problems.push(Problem {
                    key,
                    message: format!(
                        "{entry:?} must be PREFIX=URL, e.g. /api=http://127.0.0.1:8001"
                    ),
                });
                continue;
            };
            let prefix = prefix.trim();
            routes.push(Route {
                key: key.clone(),
                prefix_key: key.clone(),
                url_key: key.clone(),
                prefix: prefix.into(),
                url: url.trim().into(),
                policy: UpstreamPolicy::AnonymousOk,
            });
            let prefix_ok = check_prefix(&key, prefix, problems);
            if let (true, Some(authority)) = (prefix_ok, parse_url(&key, url.trim(), problems)) {
                upstreams.push(dev_upstream(
                    prefix,
                    authority,
                    url.trim(),
                    format!("the API backend for {prefix}"),
                    "start it".into(),
                ));
            }
        }
        match &dev.frontend {
            Some(url) => {
                routes.push(Route {
                    key: "dev.frontend".into(),
                    prefix_key: "dev.frontend".into(),
                    url_key: "dev.frontend".into(),
                    prefix: "/".into(),
                    url: url.clone(),
                    policy: UpstreamPolicy::AnonymousOk,
                });
                if let Some(authority) = parse_url("dev.frontend", url, problems) {
                    let mut front = dev_upstream(
                        "/",
                        authority,
                        url,
                        "the frontend dev server".into(),
                        format!("start it ({})", dev.frontend_command),
                    );
                    front.identity_headers = false;
                    upstreams.push(front);
                }
            }
            None => problems.push(Problem {
                key: "dev.frontend".into(),
                message: "vestibule dev needs the frontend dev server: --frontend http://127.0.0.1:5173 or [dev] frontend".into(),
            }),
        }
    }
    check_routes(&routes, listen, problems, warnings);
    let static_dir = static_dir.map(PathBuf::from);
    if let Some(dir) = &static_dir {
        if !dir.join("index.html").is_file() {
            problems.push(Problem {
                key: "static_dir".into(),
                message: format!(
                    "{} has no index.html; point it at the SPA's build output (e.g. dist/)",
                    dir.display()
                ),
            });
        }
        if upstreams.iter().any(|u| u.prefix == "/") {
            problems.push(Problem {
                key: "static_dir".into(),
                message: "cannot be combined with an upstream for / (which would take every path)"
                    .into(),
            });
        }
    }
    // Longest prefix first, so `/api/admin` wins over `/api` and `/` comes last.
    upstreams.sort_by_key(|u| std::cmp::Reverse(u.prefix.len()));
    ProxyConfig {
        upstreams,
        static_dir,
        static_headers: Vec::new(),
        dev: dev.enabled,
        assertion_key: None,
    }
}

/// One entry of the prefix table, with the keys that name it in messages.
struct Route {
    key: String,
    prefix_key: String,
    url_key: String,
    prefix: String,
    url: String,
    policy: UpstreamPolicy,
}

/// Duplicate and nested prefixes, and an upstream that is Vestibule itself.
fn check_routes(
    routes: &[Route],
    listen: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) {
    for (j, b) in routes.iter().enumerate() {
        for a in &routes[..j] {
            if a.prefix == b.prefix {
                problems.push(Problem {
                    key: b.prefix_key.clone(),
                    message: format!(
                        "{:?} is already forwarded by {}; each prefix goes to one upstream",
                        b.prefix, a.key
                    ),
                });
                continue;
            }
            // The longest prefix wins, so a nested one carves its paths out of the outer one.
            let (outer, inner) = if nests(&a.prefix, &b.prefix) {
                (a, b)
            } else if nests(&b.prefix, &a.prefix) {
                (b, a)
            } else {
                continue;
            };
            if outer.policy == UpstreamPolicy::RequireAuth
                && inner.policy == UpstreamPolicy::AnonymousOk
            {
                warnings.push(format!(
                    "{}.policy: {} is anonymous_ok inside {} {} (require_auth): anonymous requests reach {} under it; intended?",
                    inner.key, inner.prefix, outer.key, outer.prefix, inner.url
                ));
            }
        }
        if points_at(&b.url, listen) {
            problems.push(Problem {
                key: b.url_key.clone(),
                message: format!(
                    "{} is Vestibule's own listen address ({listen}): requests would loop; point it at the backend",
                    b.url
                ),
            });
        }
    }
}

/// Whether `inner` lies under `outer` (`/api/admin` under `/api`; everything under `/`).
pub(super) fn nests(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the upstream URL is the listen address itself (same port on a loopback or
/// unspecified address, or the same host and port).
pub(super) fn points_at(url: &str, listen: &str) -> bool {
    let (Ok(url), Ok(listen)) = (url::Url::parse(url), listen.parse::<std::net::SocketAddr>())
    else {
        return false;
    };
    let Some(port) = url.port_or_known_default() else {
        return false;
    };
    if port != listen.port() {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                && (listen.ip().is_loopback() || listen.ip().is_unspecified())
        }
        Some(url::Host::Ipv4(ip)) => {
            let ip = std::net::IpAddr::V4(ip);
            ip == listen.ip() || (ip.is_loopback() && listen.ip().is_unspecified())
        }
        Some(url::Host::Ipv6(ip)) => {
            let ip = std::net::IpAddr::V6(ip);
            ip == listen.ip() || (ip.is_loopback() && listen.ip().is_unspecified())
        }
        None => false,
    }
}

fn dev_upstream(
    prefix: &str,
    authority: Authority,
    url: &str,
    name: String,
    start_hint: String,
) -> Upstream {
    Upstream {
        prefix: prefix.to_owned(),
        authority,
        url: url.trim_end_matches('/').to_owned(),
        policy: UpstreamPolicy::AnonymousOk,
        change_origin: false,
        strip_prefix: false,
        connect_timeout: Duration::from_secs(5),
        // A dev server's first compile can take a while.
        response_timeout: Duration::from_secs(120),
        forward_authorization: false,
        forward_session_cookie: false,
        identity_headers: true,
        name,
        start_hint,
        identity_assertion: false,
        forward_access_token: false,
        reload_error_page: true,
        detailed_errors: true,
    }
}
