//! `vestibule config check`: validate and explain, including what the proxy forwards where
//! (`[[upstream]]`, `[dev]`) and the mistakes a prefix table invites (overlaps, loops, weaker
//! policies nested in stricter ones), each named by its key.

use std::process::ExitCode;

use vestibule::config::apply_dev;
use vestibule::config::{ConfigError, DEFAULT_CONFIG_FILE, Problem, RawConfig};
use vestibule::proxy::UpstreamPolicy;

use crate::cli::{Cli, Command, ConfigCommand};

pub(crate) fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config(ConfigCommand::Schema) = &cli.command {
        println!(
            "{}",
            serde_json::to_string_pretty(&vestibule::config::schema::json_schema())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if cli.config.is_none() && !std::path::Path::new(DEFAULT_CONFIG_FILE).exists() {
        println!(
            "no {DEFAULT_CONFIG_FILE} here and no --config: checking the defaults (with VESTIBULE_* variables and flags)"
        );
    }
    let raw = match RawConfig::load_profile(
        cli.config.as_deref(),
        cli.profile.as_deref(),
        cli.overrides(),
    ) {
        Ok(raw) => raw,
        Err(ConfigError::Invalid(problems)) => {
            print_problems(problems);
            return Ok(ExitCode::FAILURE);
        }
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
                .origins
                .csrf_trusted_origins()
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
                .origins
                .cors_allowed_origins()
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
            for prov in &config.oidc.providers {
                println!(
                    "  oidc          {} ({}): register {}/auth/oidc/{}/callback at the provider",
                    prov.name, prov.issuer, config.public_origin, prov.name
                );
            }
            if !config.oidc.providers.is_empty() {
                println!(
                    "  (whether each issuer answers its discovery document is not checked offline: `vestibule doctor --config FILE --page URL` fetches it)"
                );
            }
            for w in &config.warnings {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ConfigError::Invalid(problems)) => {
            let mut problems = problems;
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

/// What `config check` adds to the validation `serve` runs: the `vestibule dev` routes, listed,
/// and `[dev]` checked as `vestibule dev` would see it (the prefix-table rules themselves live
/// in the library's validation, so `serve` and `dev` refuse what this refuses).
#[derive(Default)]
struct ProxyCheck {
    errors: Vec<Problem>,
    dev_listing: Vec<String>,
}

impl ProxyCheck {
    /// `[dev]`, when the table says anything.
    fn of(raw: &RawConfig) -> Self {
        let mut out = Self::default();
        if raw.dev.frontend.is_none() && raw.dev.api.is_empty() {
            return out;
        }
        let mut dev = raw.clone();
        apply_dev(&mut dev);
        let listen = dev.listen.clone();
        // The file's own problems were reported by the main check; these are [dev]'s.
        if let Err(ConfigError::Invalid(problems)) = dev.validate() {
            out.errors
                .extend(problems.into_iter().filter(|p| p.key.starts_with("dev.")));
        }
        out.dev_listing
            .push(format!("  vestibule dev (from [dev]; listens on {listen})"));
        for (i, entry) in raw.dev.api.iter().enumerate() {
            if let Some((prefix, url)) = entry.split_once('=') {
                out.dev_listing.push(format!(
                    "    {:<12} -> {} (dev.api[{i}])",
                    prefix.trim(),
                    url.trim()
                ));
            }
        }
        if let Some(front) = &raw.dev.frontend {
            out.dev_listing
                .push(format!("    {:<12} -> {} (dev.frontend)", "/", front));
        }
        out
    }
}
