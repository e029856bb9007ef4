//! `vestibule outbox …`: what waits in the email outbox, what was given up and why, putting
//! messages back in the queue, and deleting old rows. Works on the database the server uses; a
//! running server's worker picks a retried message up at its next poll (`email.poll_interval`).
//! Bodies are never printed: a message may hold a live recovery or verification link.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use vestibule::config::Config;
use vestibule::db::Database;
use vestibule::email::{Outbox, RetryWhich};

use crate::cli::OutboxCommand;

pub(crate) async fn run(config: Config, command: &OutboxCommand) -> anyhow::Result<ExitCode> {
    let db = Database::connect(&config.database, config.store_timeout).await?;
    let result = run_with(&Outbox::new(db.clone()), command).await;
    db.close().await;
    result
}

async fn run_with(outbox: &Outbox, command: &OutboxCommand) -> anyhow::Result<ExitCode> {
    match command {
        OutboxCommand::List { all } => {
            let rows = outbox.list().await?;
            println!(
                "{:>6}  {:<8}  {:<16}  {:<32}  {:>8}  {:<20}  last error",
                "id", "status", "kind", "recipient", "attempts", "next try / at"
            );
            let mut shown = 0;
            for r in &rows {
                let (status, when) = match (r.sent_at, r.failed_at) {
                    (Some(t), _) => ("sent", super::date(t)),
                    (None, Some(t)) => ("failed", super::date(t)),
                    (None, None) => ("pending", super::date(r.next_attempt_at)),
                };
                if status == "sent" && !all {
                    continue;
                }
                shown += 1;
                println!(
                    "{:>6}  {:<8}  {:<16}  {:<32}  {:>8}  {:<20}  {}",
                    r.id,
                    status,
                    super::cell(&r.kind),
                    super::cell(&r.recipient),
                    r.attempts,
                    when,
                    super::cell(r.last_error.as_deref().unwrap_or("-")),
                );
            }
            let pending = rows
                .iter()
                .filter(|r| r.sent_at.is_none() && r.failed_at.is_none())
                .count();
            let failed = rows
                .iter()
                .filter(|r| r.sent_at.is_none() && r.failed_at.is_some())
                .count();
            eprintln!("{shown} message(s) shown: {pending} pending, {failed} given up");
        }
        OutboxCommand::Retry { id, all_failed } => {
            let which = match (id, all_failed) {
                (Some(id), false) => RetryWhich::Id(*id),
                (None, true) => RetryWhich::AllFailed,
                _ => bail!("give a message id or --all-failed"),
            };
            let n = outbox.retry(which).await?;
            if let RetryWhich::Id(id) = which
                && n == 0
            {
                bail!(
                    "no unsent message with id {id} (see `vestibule outbox list`; a sent message is never re-sent)"
                );
            }
            println!("{n} message(s) back in the queue, due now");
        }
        OutboxCommand::Purge {
            sent_before,
            failed_before,
        } => {
            let cut = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
                v.as_deref().map(|v| cutoff(flag, v)).transpose()
            };
            let n = outbox
                .purge(
                    cut("--sent-before", sent_before)?,
                    cut("--failed-before", failed_before)?,
                )
                .await?;
            println!("deleted {n} message(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A Unix time from a date (`2026-01-31`, midnight UTC), an RFC 3339 time, or an age (`30d`:
/// that long before now).
fn cutoff(flag: &str, value: &str) -> anyhow::Result<i64> {
    let v = value.trim();
    let at = if let Ok(age) = humantime::parse_duration(v) {
        SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH)
    } else {
        let full = if v.len() == 10 {
            format!("{v}T00:00:00Z")
        } else {
            v.to_owned()
        };
        humantime::parse_rfc3339_weak(&full).with_context(|| {
            format!(
                "{flag} {value:?}: give a date (2026-01-31), an RFC 3339 time, or an age like 30d"
            )
        })?
    };
    let secs = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Ok(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::cutoff;

    #[test]
    fn cutoffs_are_dates_times_or_ages() {
        assert_eq!(cutoff("--x", "2026-01-31").expect("date"), 1_769_817_600);
        assert_eq!(
            cutoff("--x", "2026-01-31T00:00:10Z").expect("time"),
            1_769_817_610
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let ago = cutoff("--x", "1d").expect("age");
        let expected = i64::try_from(now).expect("fits") - 86_400;
        assert!((ago - expected).abs() <= 5, "{ago} vs {expected}");
        assert!(cutoff("--x", "yesterday-ish").is_err());
    }
}
