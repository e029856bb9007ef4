//! `vestibule dev`: the development proxy. One origin (default http://localhost:3000) serves
//! the frontend dev server (hot reload WebSockets included), `/auth` (Vestibule itself, same
//! code as `serve`) and each `--api` prefix, so the SPA never makes a cross-origin request.

use std::process::ExitCode;

use anyhow::Context;
use vestibule::config::RawConfig;
use vestibule::config::apply_dev;
use vestibule::server::App;

use crate::cli::Cli;

pub(crate) async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let mut raw = RawConfig::load_profile(
        cli.config.as_deref(),
        cli.profile.as_deref(),
        cli.overrides(),
    )
    .context("the configuration is not usable (run `vestibule config check`)")?;
    apply_dev(&mut raw);
    let config = raw
        .validate()
        .context("the dev proxy cannot start (flags: --listen, --frontend, --api PREFIX=URL; or the [dev] table)")?;
    super::init_logging(config.log_format);
    for w in &config.warnings {
        tracing::debug!("{w}");
    }
    let origin = config.public_origin.clone();
    let cookie = config.session.cookie.name.clone();
    let signup = if config.signup { "open" } else { "closed" };
    let routes: Vec<String> = config
        .proxy
        .upstreams
        .iter()
        .map(|u| {
            if u.prefix == "/" {
                format!("  everything else → {} ({})", u.url, u.name)
            } else {
                format!("  {}/* → {}", u.prefix, u.url)
            }
        })
        .collect();
    let app = App::build(config).await?;
    let addr = app.local_addr()?;
    println!(
        "Vestibule dev proxy: open {origin}/ (listening on {addr}; Ctrl-C stops)\n  /auth/* → Vestibule (session cookie {cookie}, signup {signup})\n{}",
        routes.join("\n")
    );
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}
