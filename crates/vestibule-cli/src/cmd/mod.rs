//! One module per subcommand.

mod config_check;
mod dev;
mod doctor;
mod init;
mod outbox;
mod serve;
mod session;
mod token;
mod user;

use std::process::ExitCode;

use anyhow::Context;
use vestibule::config::{Config, LogFormat, RawConfig};

use crate::cli::{Cli, Command};

/// Text that came from outside (token names, user agents, usernames) made safe for a terminal
/// table: control and invisible characters ([`vestibule::auth::is_control_or_invisible`]) and the
/// backslash are escaped (`\u{1b}`, `\\`), so a stored escape sequence is shown, never run, and
/// a row cannot be made to read like another. Every CLI table prints outside text through this.
pub(crate) fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if vestibule::auth::is_control_or_invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// An API error as the CLI prints it: the code, message and hint the HTTP API answers
/// (`password_contains_username: …` then `hint: …`), never the Rust variant's name, so a message
/// reads the same in a terminal and in a browser's network tab.
pub(crate) fn api_error(e: vestibule::Error) -> anyhow::Error {
    let code = serde_json::to_value(e.code())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "error".to_owned());
    match e.hint() {
        Some(hint) => anyhow::anyhow!("{code}: {}\nhint: {hint}", e.message()),
        None => anyhow::anyhow!("{code}: {}", e.message()),
    }
}

/// A Unix time as the CLI's tables show it (RFC 3339, UTC); the number if it is out of range.
pub(crate) fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Finds a user by name for a subcommand: the name parsed as a [`vestibule::auth::Username`]
/// and looked up by its canonical form, like every other entry.
pub(crate) async fn find_user(
    users: &vestibule::auth::UserStore,
    name: &str,
) -> anyhow::Result<vestibule::auth::User> {
    let username = vestibule::auth::Username::parse(name)
        .map_err(|e| api_error(e).context(format!("{:?} is not a valid username", cell(name))))?;
    users
        .by_username(username.as_str())
        .await?
        .with_context(|| format!("no user named {:?}", cell(name)))
}

/// Loads and validates the configuration for a subcommand.
/// Waits (up to 10 s) for the provider token revocations that ending sessions started
/// (`vestibule::server::admin_sessions`): the command's runtime ends with it, and would drop
/// them.
pub(crate) async fn settle_revocations(rp: Option<&vestibule::auth::oidc::RelyingParty>) {
    if let Some(rp) = rp
        && !rp.settle(std::time::Duration::from_secs(10)).await
    {
        eprintln!(
            "warning: the provider did not answer every token revocation within 10 s; those tokens stay valid until they expire"
        );
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let raw = RawConfig::load_profile(
        cli.config.as_deref(),
        cli.profile.as_deref(),
        cli.overrides(),
    )?;
    Ok(raw.validate()?)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VESTIBULE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Config(_) => config_check::run(&cli),
        Command::Dev(_) => dev::run(&cli).await,
        Command::Doctor(args) => doctor::run(&cli, args).await,
        Command::Init(args) => init::run(&cli, args),
        command => {
            let config = load_config(&cli)
                .context("the configuration is not usable (run `vestibule config check`)")?;
            init_logging(config.log_format);
            match command {
                Command::Serve(_) => serve::run(config).await,
                Command::User(u) => user::run(config, u).await,
                Command::Token(t) => token::run(config, t).await,
                Command::Session(c) => session::run(config, c).await,
                Command::Outbox(c) => outbox::run(config, c).await,
                Command::Config(_) => config_check::run(&cli),
                Command::Dev(_) => dev::run(&cli).await,
                Command::Doctor(args) => doctor::run(&cli, args).await,
                Command::Init(args) => init::run(&cli, args),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_escape_control_and_invisible_characters_and_the_backslash() {
        assert_eq!(cell("ci deploy 🚀"), "ci deploy 🚀");
        assert_eq!(cell("\u{1b}[2K\rread"), "\\u{1b}[2K\\u{d}read");
        assert_eq!(cell("a\0b\u{7f}\u{9b}"), "a\\u{0}b\\u{7f}\\u{9b}");
        assert_eq!(cell("w\u{202e}x\u{200b}"), "w\\u{202e}x\\u{200b}");
        assert_eq!(
            cell("\\u{1b}"),
            "\\\\u{1b}",
            "a typed escape cannot pass for one"
        );
    }
}
