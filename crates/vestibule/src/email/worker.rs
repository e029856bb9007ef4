//! The outbox worker: claims due messages, sends them, retries with exponential backoff, gives
//! up with an audit event. One per instance; instances share the outbox (see the module doc).

use std::sync::Arc;
use std::time::Duration;

use super::Mailer;
use super::outbox::{Claimed, Outbox};
use super::transport::Transport;
use crate::metrics::Metrics;
use crate::session::now;

/// How many rows one claim takes.
const BATCH: i64 = 10;

/// The wait before attempt `attempts + 1`: `initial · 2^(attempts − 1)`, at most `max`, at least
/// one second (the table's clock is in seconds).
pub fn backoff(initial: Duration, max: Duration, attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    initial
        .saturating_mul(2u32.saturating_pow(exp))
        .min(max)
        .max(Duration::from_secs(1))
}

/// Runs until the task is aborted.
pub async fn run(
    outbox: Outbox,
    transport: Transport,
    mailer: Arc<Mailer>,
    metrics: Option<Arc<Metrics>>,
) {
    let s = &mailer.settings;
    // Longer than one delivery can take, so a live worker's claim never lapses mid-send.
    let lease = (s.send_timeout * 2).max(Duration::from_secs(30));
    loop {
        let claimed = match outbox.claim(lease, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "email outbox: cannot claim messages");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        for m in claimed {
            deliver(&outbox, &transport, &mailer, metrics.as_deref(), &m).await;
        }
        if let Some(m) = &metrics
            && let Ok(n) = outbox.pending().await
        {
            m.email_pending(n);
        }
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(s.poll_interval) => {}
                () = mailer.wake.notified() => {}
            }
        }
    }
}

async fn deliver(
    outbox: &Outbox,
    transport: &Transport,
    mailer: &Mailer,
    metrics: Option<&Metrics>,
    m: &Claimed,
) {
    let s = &mailer.settings;
    let result = match tokio::time::timeout(s.send_timeout, transport.send(&s.from, m)).await {
        Ok(r) => r,
        Err(_) => Err(super::transport::SendError {
            message: "timed out".into(),
            permanent: false,
        }),
    };
    let marked = match result {
        Ok(()) => {
            audit!("email.sent", outbox_id = m.id, kind = %m.kind, attempts = m.attempts, "email sent");
            outbox.mark_sent(m.id).await
        }
        Err(e) => {
            let age = now().saturating_sub(m.created_at);
            let too_old = u64::try_from(age).unwrap_or(0) >= s.give_up_after.as_secs();
            if e.permanent || too_old {
                if let Some(mt) = metrics {
                    mt.email_failed("gave_up");
                }
                audit!(
                    "email.give_up",
                    outbox_id = m.id,
                    kind = %m.kind,
                    attempts = m.attempts,
                    error = %e.message,
                    "email given up"
                );
                outbox.mark_failed(m.id, &e.message).await
            } else {
                if let Some(mt) = metrics {
                    mt.email_failed("retry");
                }
                let wait = backoff(s.retry_initial, s.retry_max, m.attempts);
                let next = now().saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
                tracing::info!(outbox_id = m.id, kind = %m.kind, attempts = m.attempts, retry_in = ?wait, error = %e.message, "email not sent; will retry");
                outbox.mark_retry(m.id, next, &e.message).await
            }
        }
    };
    if let Err(e) = marked {
        // The lease runs out and the row is tried again: at least once.
        tracing::warn!(error = %e, outbox_id = m.id, "email outbox: cannot record the outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(2), s(60), 1), s(2));
        assert_eq!(backoff(s(2), s(60), 2), s(4));
        assert_eq!(backoff(s(2), s(60), 4), s(16));
        assert_eq!(backoff(s(2), s(60), 10), s(60));
        assert_eq!(backoff(Duration::from_millis(100), s(60), 1), s(1));
        assert_eq!(backoff(s(2), s(60), i64::MAX), s(60));
    }
}
