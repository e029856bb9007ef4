//! `vestibule init LAYOUT`: writes a commented `vestibule.toml` for one of the three ways a SPA
//! meets its API, so a first configuration starts from a file that `config check` accepts and
//! that says why each key is there. The templates are whole files (`init/*.toml`), not generated
//! from the config types: their value is the comments and the choice of keys, which the CLI test
//! keeps honest by running `config check` on each.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Cli, InitArgs, Layout};

impl Layout {
    fn template(self) -> &'static str {
        match self {
            Layout::DevProxy => include_str!("init/dev-proxy.toml"),
            Layout::Subdomains => include_str!("init/subdomains.toml"),
            Layout::Gateway => include_str!("init/gateway.toml"),
        }
    }

    fn next_steps(self) -> &'static str {
        match self {
            Layout::DevProxy => {
                "start your API on 127.0.0.1:8001 and your dev server on 127.0.0.1:5173, then \
                 run `vestibule dev` and open http://localhost:3000"
            }
            Layout::Subdomains => {
                "replace example.com with your domains, then `vestibule config check`; on your \
                 machine run `vestibule serve --profile dev` (API on http://localhost:8000, SPA on \
                 http://localhost:3000)"
            }
            Layout::Gateway => {
                "replace app.example.com, build the SPA into dist/ and start your API on \
                 127.0.0.1:9000, then `vestibule serve` behind the TLS proxy (deploy/ in the \
                 repository has nginx and Caddy recipes)"
            }
        }
    }
}

pub(crate) fn run(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("vestibule.toml"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // Never overwrite a configuration someone wrote: create_new fails if it exists.
        options.create_new(true);
    }
    let mut file = match options.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} exists already; nothing was written\n  hint: pass --force to replace it, or --config OTHER.toml to write elsewhere",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    file.write_all(args.layout.template().as_bytes())?;
    println!("wrote {} (layout {})", path.display(), args.layout.name());
    println!("next: {}", args.layout.next_steps());
    Ok(ExitCode::SUCCESS)
}
