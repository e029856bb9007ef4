//! `vestibule token …`: personal access tokens from the command line.

use std::process::ExitCode;

use anyhow::bail;
use vestibule::auth::{AccessTokens, Scope, UserStore};
use vestibule::config::Config;
use vestibule::config::TokenSettings;
use vestibule::db::Database;

use crate::cli::TokenCommand;

pub(crate) async fn run(config: Config, command: &TokenCommand) -> anyhow::Result<ExitCode> {
    let db = Database::connect(&config.database, config.store_timeout).await?;
    let result = run_with(&db, &config.tokens, command).await;
    db.close().await;
    result
}

async fn run_with(
    db: &Database,
    limits: &TokenSettings,
    command: &TokenCommand,
) -> anyhow::Result<ExitCode> {
    let users = UserStore::new(db.clone());
    let tokens = AccessTokens::new(db.clone());
    let owner = |name: &str| {
        let users = users.clone();
        let name = name.to_owned();
        async move { super::find_user(&users, &name).await }
    };
    match command {
        TokenCommand::Create {
            user,
            name,
            days,
            scopes,
        } => {
            let user = owner(user).await?;
            let expires_at = limits.expiry_for(*days).map_err(|e| anyhow::anyhow!(e))?;
            let mut parsed = Vec::new();
            for s in scopes {
                parsed.push(s.parse::<Scope>().map_err(|e| anyhow::anyhow!(e))?);
            }
            if parsed.is_empty() {
                parsed.push(Scope::Read);
            }
            let (token, secret) = tokens
                .create(user.id, name, &parsed, expires_at, limits.per_user_limit)
                .await
                .map_err(|e| anyhow::anyhow!("{}", vestibule::Error::from(e)))?;
            println!(
                "created access token {} ({}) for {}",
                token.id, token.prefix, user.username
            );
            println!("it is shown once; store it now:");
            println!("{}", secret.expose());
        }
        TokenCommand::List { user } => {
            let user = owner(user).await?;
            println!(
                "{:>6}  {:<14} {:<12} {:<24} expires (unix)",
                "id", "prefix", "scopes", "name"
            );
            for t in tokens.list(user.id).await? {
                let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:>6}  {:<14} {:<12} {:<24} {}",
                    t.id,
                    t.prefix,
                    scopes.join(","),
                    super::cell(&t.name),
                    t.expires_at
                );
            }
        }
        TokenCommand::Revoke { user, id } => {
            let user = owner(user).await?;
            if !tokens.revoke(user.id, *id).await? {
                bail!("no access token {id} belongs to {}", user.username);
            }
            println!("revoked access token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
