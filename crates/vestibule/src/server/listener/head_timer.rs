//! The header-read timeout of one HTTP/1 connection, kept lazily: hyper asks for a new deadline
//! every time the connection waits for a request head, and one timer per connection, owned by
//! the task that drives it (`listener::drive`), is re-armed only when it fires early.
//!
//! Why not hyper's own timer (`TokioTimer`): hyper arms a fresh tokio sleep for every request
//! head and drops it once the head has arrived. On a kept-alive connection that is a timer-wheel
//! insertion and removal, each under the driver's lock, plus a runtime-handle clone, on every
//! request: taking the timer away saved 0.16–0.21 µs of the 3.5–4.5 µs of user CPU an
//! `/auth/me` costs (`bench/ablate.sh`, bench/RESULTS.md, issue 20). Deadlines on one
//! connection only move later, so a timer armed for an earlier one can simply be moved on when
//! it fires: the way nginx keeps its lazy timers. The protection is the same: a head that has
//! not arrived by its deadline ends the connection, whether the client sent nothing (an idle
//! keep-alive) or trickles it in (slowloris).
//!
//! How the two halves meet: hyper polls its sleep ([`HeadSleep`]) from inside the connection's
//! future, which `drive` polls, so both run in the same task. The sleep only records its
//! deadline; [`HeadWatch`], another branch of `drive`'s loop, holds the real timer and wakes the
//! task once the deadline has passed; hyper then polls the sleep again and finds it over. So
//! `drive` polls the watch after the connection, in every turn: a deadline hyper set while the
//! connection was polled is armed before the task sleeps (a watch polled first would find none,
//! and the connection would wait for a head for ever: `tests/it/slow_clients.rs` caught that).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::rt::{Sleep, Timer};
// tokio's clock (the same as std's outside tests) so that the unit tests can pause it.
use tokio::time::Instant;

/// What the two halves share: times are milliseconds after `born`, the connection's start.
#[derive(Debug)]
struct Shared {
    born: Instant,
    /// The deadline of the head hyper waits for; 0 while it waits for none.
    due_ms: AtomicU64,
    /// The time `HeadWatch`'s timer last fired: a head whose deadline is at or before it is late.
    fired_ms: AtomicU64,
}

impl Shared {
    /// `at` in milliseconds after `born`, rounded up (a deadline is never moved earlier), at
    /// least 1 (0 means "none").
    fn ms(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.born);
        let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
        u64::try_from(ms).unwrap_or(u64::MAX).max(1)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The timer given to hyper's HTTP/1 builder for one connection (see the module's comment).
#[derive(Debug, Clone)]
pub(crate) struct HeadTimer(Arc<Shared>);

/// The watch `drive` polls beside the connection.
#[derive(Debug)]
pub(crate) struct HeadWatch {
    shared: Arc<Shared>,
    /// Armed for `armed_ms` (0: not armed).
    timer: Pin<Box<tokio::time::Sleep>>,
    armed_ms: u64,
    /// The task the armed timer wakes: while it is the polling one and the timer has not
    /// fired, a poll needs nothing from tokio (the watch is polled on every wake-up of the
    /// connection, so on every request).
    waker: Option<Waker>,
    /// The deadline already reported as passed: reported once, then it is hyper's turn.
    reported_ms: u64,
}

/// A timer for a new connection, and the watch its driving task polls.
pub(crate) fn head_timer() -> (HeadTimer, HeadWatch) {
    let born = Instant::now();
    let shared = Arc::new(Shared {
        born,
        due_ms: AtomicU64::new(0),
        fired_ms: AtomicU64::new(0),
    });
    let watch = HeadWatch {
        shared: shared.clone(),
        timer: Box::pin(tokio::time::sleep_until(born)),
        armed_ms: 0,
        waker: None,
        reported_ms: 0,
    };
    (HeadTimer(shared), watch)
}

impl Timer for HeadTimer {
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until((Instant::now() + duration).into_std())
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        let due_ms = self.0.ms(Instant::from_std(deadline));
        self.0.due_ms.store(due_ms, Ordering::Relaxed);
        Box::pin(HeadSleep {
            shared: self.0.clone(),
            due_ms,
        })
    }
}

/// One head's deadline, as hyper holds it.
struct HeadSleep {
    shared: Arc<Shared>,
    due_ms: u64,
}

impl Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    /// No waker of its own: it is polled by the task that polls [`HeadWatch`] (see the module's
    /// comment), which wakes once the deadline has passed.
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired_ms.load(Ordering::Relaxed) >= self.due_ms {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for HeadSleep {
    /// The head arrived (or the connection ended): no deadline, unless hyper has already asked
    /// for the next one.
    fn drop(&mut self) {
        let _ = self.shared.due_ms.compare_exchange(
            self.due_ms,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

impl Future for HeadWatch {
    type Output = ();

    /// Ready when the deadline of the head hyper waits for has passed (once per deadline); the
    /// caller then polls the connection, whose [`HeadSleep`] is over.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let due = this.shared.due_ms.load(Ordering::Relaxed);
            if due == 0 || due == this.reported_ms {
                // Nothing to wait for. An armed timer may still fire once: a spurious wake.
                return Poll::Pending;
            }
            // Deadlines only move later: a timer armed for an earlier one stays, and is moved
            // on when it fires.
            if this.armed_ms == 0 || this.armed_ms > due {
                let at = this.shared.born + Duration::from_millis(due);
                this.timer.as_mut().reset(at);
                this.armed_ms = due;
                this.waker = None;
            } else if !this.timer.is_elapsed()
                && this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            {
                return Poll::Pending;
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                this.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            this.armed_ms = 0;
            this.waker = None;
            let now = this.shared.elapsed_ms();
            this.shared.fired_ms.store(now, Ordering::Relaxed);
            if now >= due {
                this.reported_ms = due;
                return Poll::Ready(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        Pin::new(f).poll(&mut cx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_is_late_only_after_its_own_deadline() {
        let (timer, mut watch) = head_timer();
        let mut first = timer.sleep(Duration::from_secs(1));
        assert!(poll_once(&mut watch).is_pending());
        tokio::time::advance(Duration::from_millis(600)).await;
        // The head arrived; the next one has a deadline 1 s from now (1.6 s after the start).
        drop(first);
        let mut second = timer.sleep(Duration::from_secs(1));
        assert!(poll_once(&mut second).is_pending());
        tokio::time::advance(Duration::from_millis(600)).await;
        // The first deadline passed: the watch moves on without reporting.
        assert!(poll_once(&mut watch).is_pending());
        assert!(poll_once(&mut second).is_pending());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(poll_once(&mut watch).is_ready());
        assert!(poll_once(&mut second).is_ready());
        // Reported once: the connection's turn now.
        assert!(poll_once(&mut watch).is_pending());
        first = timer.sleep(Duration::from_secs(1));
        assert!(poll_once(&mut first).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_while_no_head_is_awaited() {
        let (timer, mut watch) = head_timer();
        let sleep = timer.sleep(Duration::from_millis(100));
        drop(sleep);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(poll_once(&mut watch).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_sleep_does_not_clear_its_successor() {
        let (timer, mut watch) = head_timer();
        let old = timer.sleep(Duration::from_millis(100));
        let new = timer.sleep(Duration::from_millis(300));
        drop(old);
        tokio::time::advance(Duration::from_millis(301)).await;
        assert!(poll_once(&mut watch).is_ready());
        drop(new);
    }
}
