//! `vestibule serve`.

use std::process::ExitCode;

use vestibule::config::Config;
use vestibule::db::DatabaseLocation;
use vestibule::server::{App, StartError};

pub(crate) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let demo = config.demo;
    let origin = config.public_origin.clone();
    let db = config.database.clone();
    let store = config.store;
    let app = App::build(config).await.map_err(|e| match e {
        // One line with the fix, not the driver's error chain three times over.
        StartError::Db(e) => match &db {
            DatabaseLocation::Sqlite(path) => anyhow::anyhow!(
                "{e}\nhint: check that the directory of {} exists and that this user may create \
                 files in it (SQLite keeps the database and its -wal and -shm files there), or \
                 set database_url",
                path.display()
            ),
            DatabaseLocation::Postgres(_) => anyhow::anyhow!(
                "{e}\nhint: check that PostgreSQL is running and that database_url names a \
                 database this user may create tables in"
            ),
        },
        // `{e:#}` would print the io error twice (once in the message, once as its source).
        StartError::Bind { addr, source } => {
            let why = if source.kind() == std::io::ErrorKind::AddrInUse {
                "another process is listening there"
            } else {
                "the address cannot be used here"
            };
            anyhow::anyhow!(
                "cannot listen on {addr}: {why} ({source})\nhint: choose another address with \
                 --listen or VESTIBULE_LISTEN (e.g. --listen 127.0.0.1:8001)"
            )
        }
        other => other.into(),
    })?;
    let addr = app.local_addr()?;
    // `--listen …:0`: the port is the one the OS chose, which no configuration could name.
    let origin = if origin.port() == 0 {
        format!("{}://{}:{}", origin.scheme(), origin.host(), addr.port())
    } else {
        origin.to_string()
    };
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
