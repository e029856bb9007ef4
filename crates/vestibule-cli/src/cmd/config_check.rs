//! `vestibule config check`: validate and explain.

use std::process::ExitCode;

use vestibule::config::{ConfigError, RawConfig};

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
    match raw.validate() {
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
            for w in &config.warnings {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ConfigError::Invalid(problems)) => {
            println!("configuration has {} problem(s):", problems.len());
            for p in problems {
                println!("  - {p}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("configuration error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
