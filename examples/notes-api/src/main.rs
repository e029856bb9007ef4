//! `notes-api library|upstream`: see the crate's README.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use notes_api::assertion::Verifier;
use notes_api::notes::Notes;
use notes_api::upstream::UpstreamState;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "notes-api",
    about = "Per-user notes: Vestibule's example backend"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Vestibule mounted in-process: /auth/* and /api/notes on one port (handlers take AuthUser).
    Library {
        /// Where to listen (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// Vestibule's SQLite database (users, sessions).
        #[arg(long, default_value = "notes-api.db")]
        database: PathBuf,
        /// The URL browsers use (default http://localhost:PORT).
        #[arg(long)]
        public_url: Option<String>,
    },
    /// Behind `vestibule serve` ([[upstream]] prefix = "/api"): reads X-Vestibule-User-Id/-Username.
    Upstream {
        /// Where to listen (loopback or a private network: only the gateway may reach it).
        #[arg(long, default_value = "127.0.0.1:8001")]
        listen: String,
        /// Also require a valid X-Vestibule-Assertion, checked with the gateway's keys at this
        /// URL (e.g. http://127.0.0.1:8000/auth/jwks.json).
        #[arg(long)]
        jwks_url: Option<String>,
        /// The assertion's expected audience: this backend's URL as the gateway's
        /// `[[upstream]] url` names it (default http://ADDRESS, the bound address).
        #[arg(long, requires = "jwks_url")]
        audience: Option<String>,
        /// The assertion's expected issuer: the gateway's public_url (default: not checked).
        #[arg(long, requires = "jwks_url")]
        issuer: Option<String>,
    },
}

async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

/// Tells the caller (a person, or a test reading stdout) where we listen.
fn announce(mode: &str, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "notes-api ({mode}) listening on http://{addr}")?;
    out.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NOTES_API_LOG")
                .unwrap_or_else(|_| "notes_api=info,vestibule=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let notes = Notes::default();
    match Cli::parse().mode {
        Mode::Library {
            listen,
            database,
            public_url,
        } => {
            // Vestibule binds its own listener: find a free port first when asked for port 0.
            let port = bind(&listen).await?.local_addr()?.port();
            // Defaults, then vestibule.toml if present and VESTIBULE_* variables, then these.
            let overrides = serde_json::json!({
                "listen": format!("127.0.0.1:{port}"),
                "public_url": public_url.unwrap_or_else(|| format!("http://localhost:{port}")),
                "database_url": database.to_string_lossy(),
                "auth": { "signup": true },
            });
            let config = vestibule::config::RawConfig::load(None, overrides)?
                .validate()
                .context("Vestibule's configuration is not usable")?;
            let app = notes_api::library::app(config, notes).await?;
            announce("library", app.local_addr()?)?;
            app.run_until_stopped().await?;
        }
        Mode::Upstream {
            listen,
            jwks_url,
            audience,
            issuer,
        } => {
            let listener = bind(&listen).await?;
            let verifier = match jwks_url {
                Some(url) => {
                    let bound = listener.local_addr()?;
                    let audience = audience.unwrap_or_else(|| format!("http://{bound}"));
                    Some(Arc::new(Verifier::new(url, audience, issuer)?))
                }
                None => None,
            };
            let router = notes_api::upstream::router(UpstreamState { notes, verifier });
            announce("upstream", listener.local_addr()?)?;
            notes_api::serve(listener, router).await?;
        }
    }
    Ok(())
}
