//! `vestibule token …`: personal access tokens from the command line.

use std::process::ExitCode;

use anyhow::bail;
use vestibule::auth::{AccessTokens, Scope, UserStore};
use vestibule::config::Config;
use vestibule::config::TokenSettings;
use vestibule::db::Database;

use crate::cli::TokenCommand;

/// `token revoke NAME ID`, or the older `token revoke --user NAME ID`: the owner and the id.
fn revoke_args<'a>(
    args: &'a [String],
    user_flag: Option<&'a str>,
) -> anyhow::Result<(&'a str, i64)> {
    let (name, id) = match (user_flag, args) {
        (Some(name), [id]) => (name, id),
        (None, [name, id]) => (name.as_str(), id),
        _ => bail!(
            "write `vestibule token revoke NAME ID` (the owner, then the id from `token list`)"
        ),
    };
    let id = id.parse().map_err(|_| {
        anyhow::anyhow!(
            "{:?} is not a token id (a number from `token list`)",
            super::cell(id)
        )
    })?;
    Ok((name, id))
}

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
            let user = owner(user.name()).await?;
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
                .map_err(|e| super::api_error(vestibule::Error::from(e)))?;
            println!(
                "created access token {} ({}) for {}",
                token.id, token.prefix, user.username
            );
            println!("it is shown once; store it now:");
            println!("{}", secret.expose());
        }
        TokenCommand::List { user } => {
            let user = owner(user.name()).await?;
            println!(
                "{:>6}  {:<14} {:<12} {:<24} {:<20}  last used",
                "id", "prefix", "scopes", "name", "expires"
            );
            for t in tokens.list(user.id).await? {
                let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:>6}  {:<14} {:<12} {:<24} {:<20}  {}",
                    t.id,
                    t.prefix,
                    scopes.join(","),
                    super::cell(&t.name),
                    super::date(t.expires_at),
                    t.last_used_at
                        .map_or_else(|| "never".to_owned(), super::date),
                );
            }
        }
        TokenCommand::Revoke { args, user_flag } => {
            let (name, id) = revoke_args(args, user_flag.as_deref())?;
            let user = owner(name).await?;
            let id = &id;
            if !tokens.revoke(user.id, *id).await? {
                bail!("no access token {id} belongs to {}", user.username);
            }
            println!("revoked access token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
