//! `vestibule config check`: validate and explain, including what the proxy forwards where
//! (`[[upstream]]`, `[dev]`) and the mistakes a prefix table invites (overlaps, loops, weaker
//! policies nested in stricter ones), each named by its key.

use std::net::SocketAddr;
use std::process::ExitCode;

use vestibule::config::{ConfigError, Problem, RawConfig};
use vestibule::proxy::UpstreamPolicy;
use vestibule::proxy::config::apply_dev;

use crate::cli::Cli;

pub(crate) fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let raw = match RawConfig::load_profile(
        cli.config.as_deref(),
        cli.profile.as_deref(),
        cli.overrides(),
    ) {
        Ok(raw) => raw,
        Err(e) => {
            println!("configuration error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let proxy = ProxyCheck::of(&raw);
    match raw.validate() {
        Ok(_) if !proxy.errors.is_empty() => {
            print_problems(proxy.errors);
            Ok(ExitCode::FAILURE)
        }
        Ok(config) => {
            println!("configuration is valid");
            println!("  listen        {}", config.listen);
            println!("  public origin {}", config.public_origin);
            println!("  database      {}", config.database);
            println!("  session store {:?}", config.store);
            println!(
                "  cookie        {} (HttpOnly; SameSite={:?}; Path={}{}{})",
                config.session.cookie.name,
                config.session.cookie.same_site,
                config.session.cookie.path,
                if config.session.cookie.secure {
                    if config.session.cookie.partitioned {
                        "; Secure; Partitioned"
                    } else {
                        "; Secure"
                    }
                } else {
                    ""
                },
                config
                    .session
                    .cookie
                    .domain
                    .as_deref()
                    .map(|d| format!("; Domain={d}"))
                    .unwrap_or_default()
            );
            let trusted: Vec<String> = config
                .csrf
                .trusted_origins
                .iter()
                .map(ToString::to_string)
                .collect();
            println!(
                "  CSRF trusted  {}",
                if trusted.is_empty() {
                    "(own origin only)".into()
                } else {
                    trusted.join(", ")
                }
            );
            let cors: Vec<String> = config
                .cors
                .allowed_origins
                .iter()
                .map(ToString::to_string)
                .collect();
            println!(
                "  CORS          {} (credentials: {}, paths: {})",
                cors.join(", "),
                config.cors.allow_credentials,
                config.cors.paths.join(", ")
            );
            println!(
                "  access tokens {} days by default, {} at most, {} per user",
                config.tokens.default_expiry.as_secs() / 86_400,
                config.tokens.max_expiry.as_secs() / 86_400,
                config.tokens.per_user_limit
            );
            if config.proxy.upstreams.is_empty() && config.proxy.static_dir.is_none() {
                println!("  upstreams     (none: nothing is proxied)");
            } else {
                println!(
                    "  upstreams     (longest prefix first; /auth, /healthz, /readyz stay Vestibule's)"
                );
                for u in &config.proxy.upstreams {
                    let mut flags = vec![policy_name(u.policy)];
                    if u.strip_prefix {
                        flags.push("strip_prefix");
                    }
                    if u.change_origin {
                        flags.push("change_origin");
                    }
                    if u.identity_assertion {
                        flags.push("identity_assertion");
                    }
                    if u.forward_authorization {
                        flags.push("forward_authorization");
                    }
                    if u.forward_session_cookie {
                        flags.push("forward_session_cookie");
                    }
                    println!("    {:<12} -> {} ({})", u.prefix, u.url, flags.join(", "));
                }
                if let Some(dir) = &config.proxy.static_dir {
                    println!(
                        "    {:<12} -> static files in {}",
                        "(the rest)",
                        dir.display()
                    );
                }
            }
            for line in &proxy.dev_listing {
                println!("{line}");
            }
            for w in &config.warnings {
                println!("warning: {w}");
            }
            for w in &proxy.warnings {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ConfigError::Invalid(problems)) => {
            // The generic duplicate-prefix problem is replaced by ours, which names both keys.
            let mut problems: Vec<Problem> = problems
                .into_iter()
                .filter(|p| !(p.key == "upstream" && p.message.contains("forwarded twice")))
                .collect();
            for e in proxy.errors {
                if !problems.contains(&e) {
                    problems.push(e);
                }
            }
            print_problems(problems);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("configuration error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_problems(problems: Vec<Problem>) {
    println!("configuration has {} problem(s):", problems.len());
    for p in problems {
        println!("  - {p}");
    }
}

fn policy_name(p: UpstreamPolicy) -> &'static str {
    match p {
        UpstreamPolicy::RequireAuth => "require_auth",
        UpstreamPolicy::AnonymousOk => "anonymous_ok",
    }
}

/// One forwarded prefix as written, with the key that names it.
struct Route {
    /// `upstream[0]`, `dev.api[1]`, `dev.frontend`.
    key: String,
    /// The keys for the prefix and the URL (the same for a `dev.api` entry, `PREFIX=URL`).
    prefix_key: String,
    url_key: String,
    prefix: String,
    url: String,
    policy: UpstreamPolicy,
}

/// What `config check` adds to the validation for the proxy tables: problems that make the
/// configuration fail, warnings that do not, and the `vestibule dev` routes.
#[derive(Default)]
struct ProxyCheck {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    dev_listing: Vec<String>,
}

impl ProxyCheck {
    fn of(raw: &RawConfig) -> Self {
        let mut out = Self::default();
        let routes: Vec<Route> = raw
            .upstream
            .iter()
            .enumerate()
            .map(|(i, u)| Route {
                key: format!("upstream[{i}]"),
                prefix_key: format!("upstream[{i}].prefix"),
                url_key: format!("upstream[{i}].url"),
                prefix: u.prefix.clone(),
                url: u.url.clone(),
                policy: u.policy,
            })
            .collect();
        out.check_routes(&routes, &raw.listen);
        for (i, u) in raw.upstream.iter().enumerate() {
            if u.forward_session_cookie {
                out.warnings.push(Problem {
                    key: format!("upstream[{i}].forward_session_cookie"),
                    message: "the browser's Vestibule session cookie reaches this upstream, which can then act as the user anywhere; the identity headers are enough for most backends".into(),
                });
            }
            if u.forward_authorization {
                out.warnings.push(Problem {
                    key: format!("upstream[{i}].forward_authorization"),
                    message: "clients' bearer tokens reach this upstream, which can replay them; the identity headers are enough for most backends".into(),
                });
            }
            if u.prefix == "/" && u.policy == UpstreamPolicy::RequireAuth {
                out.warnings.push(Problem {
                    key: format!("upstream[{i}].policy"),
                    message: "require_auth on \"/\" answers 401 to every page an anonymous visitor opens, the login page too; use anonymous_ok for the catch-all".into(),
                });
            }
        }
        out.check_dev(raw);
        out
    }

    /// Duplicate and nested prefixes, and an upstream that is Vestibule itself.
    fn check_routes(&mut self, routes: &[Route], listen: &str) {
        for (j, b) in routes.iter().enumerate() {
            for a in &routes[..j] {
                if a.prefix == b.prefix {
                    self.errors.push(Problem {
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
                    self.warnings.push(Problem {
                        key: format!("{}.policy", inner.key),
                        message: format!(
                            "{} is anonymous_ok inside {} {} (require_auth): anonymous requests reach {} under it; intended?",
                            inner.prefix, outer.key, outer.prefix, inner.url
                        ),
                    });
                }
            }
            if points_at(&b.url, listen) {
                self.errors.push(Problem {
                    key: b.url_key.clone(),
                    message: format!(
                        "{} is Vestibule's own listen address ({listen}): requests would loop; point it at the backend",
                        b.url
                    ),
                });
            }
        }
    }

    /// `[dev]`, checked as `vestibule dev` would see it, when the table says anything.
    fn check_dev(&mut self, raw: &RawConfig) {
        if raw.dev.frontend.is_none() && raw.dev.api.is_empty() {
            return;
        }
        let mut dev = raw.clone();
        apply_dev(&mut dev);
        let listen = dev.listen.clone();
        let mut routes = Vec::new();
        for (i, entry) in raw.dev.api.iter().enumerate() {
            if let Some((prefix, url)) = entry.split_once('=') {
                routes.push(Route {
                    key: format!("dev.api[{i}]"),
                    prefix_key: format!("dev.api[{i}]"),
                    url_key: format!("dev.api[{i}]"),
                    prefix: prefix.trim().into(),
                    url: url.trim().into(),
                    policy: UpstreamPolicy::AnonymousOk,
                });
            }
        }
        if let Some(front) = &raw.dev.frontend {
            routes.push(Route {
                key: "dev.frontend".into(),
                prefix_key: "dev.frontend".into(),
                url_key: "dev.frontend".into(),
                prefix: "/".into(),
                url: front.clone(),
                policy: UpstreamPolicy::AnonymousOk,
            });
        }
        // The file's own problems were reported by the main check; these are [dev]'s.
        if let Err(ConfigError::Invalid(problems)) = dev.validate() {
            self.errors
                .extend(problems.into_iter().filter(|p| p.key.starts_with("dev.")));
        }
        self.check_routes(&routes, &listen);
        self.dev_listing
            .push(format!("  vestibule dev (from [dev]; listens on {listen})"));
        for r in &routes {
            self.dev_listing
                .push(format!("    {:<12} -> {} ({})", r.prefix, r.url, r.key));
        }
    }
}

/// Whether `inner` lies under `outer` (`/api/admin` under `/api`; everything under `/`).
fn nests(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the upstream URL is the listen address itself (same port on a loopback or
/// unspecified address, or the same host and port).
fn points_at(url: &str, listen: &str) -> bool {
    let (Ok(url), Ok(listen)) = (url::Url::parse(url), listen.parse::<SocketAddr>()) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_prefixes_are_told_from_siblings() {
        assert!(nests("/api", "/api/admin"));
        assert!(nests("/", "/api"));
        assert!(!nests("/api", "/apix"));
        assert!(!nests("/api", "/api"));
        assert!(!nests("/api/admin", "/api"));
    }

    #[test]
    fn an_upstream_on_the_listen_address_is_a_loop() {
        assert!(points_at("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(points_at("http://localhost:8080", "127.0.0.1:8080"));
        assert!(points_at("http://127.0.0.1:8080", "0.0.0.0:8080"));
        assert!(points_at("http://[::1]:8080/", "[::1]:8080"));
        assert!(!points_at("http://127.0.0.1:8001", "127.0.0.1:8080"));
        assert!(!points_at("http://10.0.0.5:8080", "127.0.0.1:8080"));
        assert!(!points_at("not a url", "127.0.0.1:8080"));
    }
}
