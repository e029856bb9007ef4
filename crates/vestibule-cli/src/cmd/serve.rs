//! `vestibule serve`.

use std::process::ExitCode;

use vestibule::config::Config;
use vestibule::server::App;

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let demo = config.demo;
    let origin = config.public_origin.clone();
    let db = config.database.clone();
    let store = config.store;
    let app = App::build(config).await?;
    let addr = app.local_addr()?;
    tracing::info!(%addr, public_url = %origin, database = %db, store = ?store, "vestibule listening");
    if demo {
        println!(
            "Vestibule demo: open {origin}/ to sign up and log in (listening on {addr}; Ctrl-C stops)"
        );
    }
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
