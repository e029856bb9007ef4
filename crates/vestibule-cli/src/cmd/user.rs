//! `vestibule user …`: administration without the HTTP API. Passwords never come from argv.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, bail};
use vestibule::auth::{
    AccessTokens, Password, PasswordHasher, PasswordPolicy, PasswordResets, UserStore, Username,
};
use vestibule::config::Config;
use vestibule::db::Database;
use vestibule::server::admin_sessions;

use crate::cli::{UserCommand, UserPasswordArgs};

/// Ends every session of `user_id` through the library's one revocation function (the cookie
/// store bumps the generation; the others delete): what disabling and setting a password do.
async fn end_user_sessions(
    config: &Config,
    db: &Database,
    user_id: i64,
) -> anyhow::Result<vestibule::session::Ended> {
    let (sessions, rp) = admin_sessions(config, db)?;
    let ended = sessions
        .end(vestibule::session::Revoke::User {
            user_id,
            keep: None,
        })
        .await
        .map_err(super::api_error)?;
    super::settle_revocations(rp.as_ref()).await;
    Ok(ended)
}

/// The "password changed" notice for `user` when `[email]` is on and the account has a verified
/// address (`[email.notify] password_changed` decides, as for the HTTP API).
fn password_notice(config: &Config, user: &vestibule::auth::User) -> vestibule::email::Notice {
    // The templates were checked when the configuration was validated.
    let Ok(templates) = vestibule::email::Templates::load(config.email.templates_dir.as_deref())
    else {
        return vestibule::email::Notice::none();
    };
    let mailer = vestibule::email::Mailer {
        settings: config.email.clone(),
        templates,
        wake: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    mailer.notice(
        &vestibule::email::SecurityNotice::PasswordChanged,
        &user.username,
        user.email.as_deref().filter(|_| user.email_verified),
    )
}

fn read_password(args: &UserPasswordArgs) -> anyhow::Result<Password> {
    let text = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot prompt (use --password-stdin)")?;
        let again = rpassword::prompt_password("Password (again): ").context("cannot prompt")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    };
    Ok(Password::new(text))
}

pub(crate) async fn run(config: Config, command: &UserCommand) -> anyhow::Result<ExitCode> {
    let db = Database::connect(&config.database, config.store_timeout).await?;
    let users = UserStore::new(db.clone());
    let result = run_with(&config, &db, &users, command).await;
    db.close().await;
    result
}

async fn find(users: &UserStore, username: &str) -> anyhow::Result<vestibule::auth::User> {
    super::find_user(users, username).await
}

async fn run_with(
    config: &Config,
    db: &Database,
    users: &UserStore,
    command: &UserCommand,
) -> anyhow::Result<ExitCode> {
    let policy = PasswordPolicy {
        min_length: config.min_password_length,
    };
    match command {
        UserCommand::Add(args) => {
            let username = Username::parse(&args.username).map_err(super::api_error)?;
            let password = read_password(args)?;
            policy
                .check(username.as_str(), &password)
                .map_err(super::api_error)?;
            let hash = PasswordHasher::new(1).await?.hash(&password).await?;
            let user = users
                .create(&username, &hash)
                .await
                .map_err(|e| super::api_error(vestibule::Error::from(e)))?;
            println!("created user {} (id {})", user.username, user.id);
        }
        UserCommand::List => {
            println!("{:>6}  {:<24} {:<8} last login", "id", "username", "active");
            for u in users.list().await? {
                let last = u.last_login.map_or_else(|| "never".to_owned(), super::date);
                println!(
                    "{:>6}  {:<24} {:<8} {}",
                    u.id,
                    super::cell(&u.username),
                    if u.is_active { "yes" } else { "no" },
                    last
                );
            }
        }
        UserCommand::Disable(arg) => {
            let user = find(users, &arg.username).await?;
            let (sessions, rp) = admin_sessions(config, db)?;
            let (ended, revoked) = vestibule::auth::disable_user(db, &sessions, user.id)
                .await
                .map_err(super::api_error)?;
            super::settle_revocations(rp.as_ref()).await;
            println!(
                "disabled {}; {ended}; revoked {revoked} access token(s)",
                user.username,
            );
        }
        UserCommand::Delete(arg) => {
            let user = find(users, &arg.username).await?;
            let (sessions, rp) = admin_sessions(config, db)?;
            let ended = vestibule::auth::delete_user(db, &sessions, user.id)
                .await
                .map_err(super::api_error)?;
            super::settle_revocations(rp.as_ref()).await;
            println!("deleted {} (id {}); {ended}", user.username, user.id);
        }
        UserCommand::Enable(arg) => {
            let user = find(users, &arg.username).await?;
            users.set_active(user.id, true).await?;
            println!("enabled {}", user.username);
        }
        UserCommand::SetPassword(args) => {
            let user = find(users, &args.username).await?;
            let password = read_password(args)?;
            policy
                .check(&user.username, &password)
                .map_err(super::api_error)?;
            let hash = PasswordHasher::new(1).await?.hash(&password).await?;
            // The user is told, like after their own change: the notice commits with the new
            // password, and a running server's worker sends it at its next poll.
            let notice = password_notice(config, &user);
            users.set_password_hash(user.id, &hash, &notice).await?;
            let ended = end_user_sessions(config, db, user.id).await?;
            let revoked = if config.tokens.revoke_on_password_change {
                AccessTokens::new(db.clone()).revoke_all(user.id).await?
            } else {
                0
            };
            println!(
                "password of {} changed; {ended}; revoked {revoked} access token(s)",
                user.username,
            );
        }
        UserCommand::ResetPassword(args) => {
            let user = find(users, args.user.name()).await?;
            if !user.is_active {
                bail!(
                    "{} is disabled: enable the account first (`vestibule user enable {}`)",
                    user.username,
                    user.username
                );
            }
            let lifetime = humantime::parse_duration(&args.valid_for)
                .ok()
                .filter(|d| !d.is_zero() && *d <= vestibule::auth::reset::MAX_RESET_LIFETIME)
                .with_context(|| {
                    format!(
                        "--valid-for {:?}: give a duration from 1s to 7d, like 1h",
                        args.valid_for
                    )
                })?;
            let (token, expires_at) = PasswordResets::new(db.clone())
                .issue(user.id, lifetime)
                .await
                .map_err(|e| super::api_error(vestibule::Error::from(e)))?;
            // The token on stdout (alone on its line, for scripts); the explanation on stderr.
            println!("{}", token.expose());
            eprintln!(
                "one-time reset token for {} (valid until {}; any older token is void).\n\
                 Hand it over privately; the user sets a password with\n  \
                 POST /auth/password/reset {{\"token\": \"…\", \"new_password\": \"…\"}}",
                user.username,
                super::date(expires_at),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
