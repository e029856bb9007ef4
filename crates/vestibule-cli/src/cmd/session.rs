//! `vestibule session …`: list and end users' sessions from the command line. The store is
//! the one the server uses (`session.store`), so a running server refuses an ended session at
//! its next request (its read cache notices another process's SQLite commit within a second;
//! Redis and PostgreSQL are read directly or kept coherent).

use std::process::ExitCode;

use anyhow::Context;
use vestibule::auth::UserStore;
use vestibule::config::Config;
use vestibule::db::Database;
use vestibule::server::{admin_sessions, build_store};
use vestibule::session::{Ended, Revoke};
use vestibule::token::TokenHash;

use crate::cli::SessionCommand;

pub(crate) async fn run(config: Config, command: &SessionCommand) -> anyhow::Result<ExitCode> {
    let db = Database::connect(&config.database, config.store_timeout).await?;
    let result = run_with(&config, &db, command).await;
    db.close().await;
    result
}

async fn run_with(
    config: &Config,
    db: &Database,
    command: &SessionCommand,
) -> anyhow::Result<ExitCode> {
    let users = UserStore::new(db.clone());
    let find = |name: String| {
        let users = users.clone();
        async move { super::find_user(&users, &name).await }
    };
    match command {
        SessionCommand::List { user } => {
            let user = find(user.name().to_owned()).await?;
            let records = build_store(config, db)?.0.list_user(user.id).await?;
            println!(
                "{:<64}  {:<20}  {:<20}  {:<20}  {:<9} user agent",
                "id", "created", "last seen", "expires", "transport"
            );
            for r in &records {
                let transport = r.user.as_ref().map_or("cookie", |u| u.transport.as_str());
                println!(
                    "{:<64}  {:<20}  {:<20}  {:<20}  {:<9} {}",
                    r.key.to_hex(),
                    super::date(r.created_at),
                    super::date(r.last_seen),
                    super::date(r.expires_at.min(r.absolute_expires_at)),
                    transport,
                    super::cell(r.user_agent.as_deref().unwrap_or("-"))
                );
            }
            eprintln!("{} live session(s) of {}", records.len(), user.username);
        }
        SessionCommand::Revoke { user, all, id } => {
            // Only ending sessions needs the relying party (its end hook revokes provider
            // tokens): a listing builds no HTTP client.
            let (sessions, rp) = admin_sessions(config, db)?;
            // Every variant goes through the library's one way of ending sessions (the end
            // hook revokes provider tokens); a store that cannot do what is asked (the cookie
            // store, one session by id) fails the command.
            let ended = if let Some(name) = user {
                let user = find(name.clone()).await?;
                sessions
                    .end(Revoke::User {
                        user_id: user.id,
                        keep: None,
                    })
                    .await
                    .map_err(super::api_error)?
            } else if *all {
                let ids = users.list().await?.into_iter().map(|u| u.id);
                sessions.end_all(ids).await.map_err(super::api_error)?
            } else if let Some(id) = id {
                let key = TokenHash::from_hex(id.trim())
                    .with_context(|| format!("{id:?} is not a session id from `session list`"))?;
                let ended = sessions
                    .end(Revoke::One(&key))
                    .await
                    .map_err(super::api_error)?;
                if ended == Ended::Deleted(0) {
                    anyhow::bail!(
                        "no live session has the id {id:?} (already ended or expired?); see `vestibule session list --user NAME`"
                    );
                }
                ended
            } else {
                anyhow::bail!("name --user NAME, --all or a session id");
            };
            super::settle_revocations(rp.as_ref()).await;
            println!("{ended}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
