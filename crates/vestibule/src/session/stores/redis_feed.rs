//! Cache coherence between instances over Redis pub/sub.
//!
//! Every instance subscribes to `{prefix}invalidate`. A write (save, delete, revoke-all) through
//! a [`CachedStore`](super::CachedStore) publishes `"inv {instance} {nonce} {hex key},…"`; every
//! other subscriber drops those keys from its cache under each key's lock (after any fill in
//! flight for them) and then publishes `"ack {instance} {nonce}"`. `PUBLISH` answers how many
//! subscribers received the message, and the writer waits for that many acknowledgements (its
//! own subscription counting for itself) before it answers its request. So when the client sees
//! the answer, every instance that was listening has dropped its copy: the very next request,
//! wherever it lands, reads the shared store. The wait is bounded by the store timeout; an
//! instance that has not acknowledged by then is one whose subscription is failing, and its
//! heartbeat takes it off its cache within about a second.
//!
//! While an instance's subscription is down (connecting, Redis restarting, no heartbeat answer)
//! it reads nothing from its cache, and it drops the whole cache when the subscription comes back,
//! since messages may have been missed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::cached::{CacheHandle, Invalidation};
use super::redis::{RedisConfig, RedisStore, bounded};
use crate::session::store::StoreError;
use crate::token::TokenHash;

/// How often a live subscription is checked with a PING (a dead peer may never close the socket).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The Redis pub/sub [`Invalidation`] feed of one instance.
pub struct RedisInvalidation {
    store: RedisStore,
    channel: String,
    instance: String,
    timeout: Duration,
    state: Arc<FeedState>,
    listener: JoinHandle<()>,
}

#[derive(Default)]
struct FeedState {
    live: AtomicBool,
    epoch: AtomicU64,
    nonce: AtomicU64,
    /// Own announcements awaiting acknowledgements, by nonce.
    pending: Mutex<HashMap<u64, Pending>>,
}

/// Acknowledgements of one announcement: how many came, how many `PUBLISH` said to expect.
struct Pending {
    got: usize,
    want: Option<usize>,
    done: Option<oneshot::Sender<()>>,
}

impl FeedState {
    /// Counts acknowledgements (or sets the expected number) and wakes the writer when complete.
    fn update(&self, nonce: u64, ack: bool, want: Option<usize>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let Some(p) = pending.get_mut(&nonce) else {
            return;
        };
        if ack {
            p.got += 1;
        }
        if want.is_some() {
            p.want = want;
        }
        if p.want.is_some_and(|w| p.got >= w)
            && let Some(tx) = p.done.take()
        {
            let _ = tx.send(());
        }
    }

    fn forget(&self, nonce: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&nonce);
        }
    }
}

impl fmt::Debug for RedisInvalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisInvalidation")
            .field("channel", &self.channel)
            .field("live", &self.state.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for RedisInvalidation {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl RedisInvalidation {
    /// Starts listening (in a task that lives as long as the returned feed) and returns the feed.
    /// Must be called inside a Tokio runtime.
    pub fn start(store: RedisStore, config: &RedisConfig, cache: CacheHandle) -> Arc<Self> {
        let channel = format!("{}invalidate", config.prefix);
        let instance = crate::token::SecretToken::generate(crate::token::TokenKind::Session)
            .hash()
            .to_hex()[..16]
            .to_owned();
        let state = Arc::new(FeedState::default());
        let listener = tokio::spawn(listen(
            config.urls.clone(),
            channel.clone(),
            instance.clone(),
            config.timeout,
            cache,
            state.clone(),
            store.clone(),
        ));
        Arc::new(Self {
            store,
            channel,
            instance,
            timeout: config.timeout,
            state,
            listener,
        })
    }
}

#[async_trait]
impl Invalidation for RedisInvalidation {
    fn is_live(&self) -> bool {
        self.state.live.load(Ordering::Acquire)
    }

    fn epoch(&self) -> u64 {
        self.state.epoch.load(Ordering::Acquire)
    }

    async fn publish(&self, keys: &[TokenHash]) -> Result<(), StoreError> {
        let nonce = self.state.nonce.fetch_add(1, Ordering::Relaxed);
        let hex: Vec<String> = keys.iter().map(TokenHash::to_hex).collect();
        let message = format!("inv {} {nonce} {}", self.instance, hex.join(","));
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.state.pending.lock() {
            pending.insert(
                nonce,
                Pending {
                    got: 0,
                    want: None,
                    done: Some(tx),
                },
            );
        }
        let mut c = match self.store.conn().await {
            Ok(c) => c,
            Err(e) => {
                self.state.forget(nonce);
                return Err(e);
            }
        };
        let sent = bounded(
            self.timeout,
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(&message)
                .query_async::<i64>(&mut c),
        )
        .await;
        let receivers = match sent {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(e) => {
                self.state.forget(nonce);
                return Err(e);
            }
        };
        if !self.is_live() {
            // Deaf ourselves (starting up, e.g. a `vestibule user` command, or reconnecting):
            // the acknowledgements cannot reach us, but the others got the message from Redis.
            self.state.forget(nonce);
            return Ok(());
        }
        self.state.update(nonce, false, Some(receivers));
        if tokio::time::timeout(self.timeout, rx).await.is_err() {
            // Some subscriber did not confirm within the bound: its subscription is failing, and
            // its heartbeat will take it off its cache. The shared store has the write either way.
            tracing::warn!(
                "cache invalidation not acknowledged by every instance within {:?}",
                self.timeout
            );
        }
        self.state.forget(nonce);
        Ok(())
    }
}

/// Subscribes, applies the others' messages, resolves our own echoes; reconnects on failure
/// (rotating through the configured nodes), bypassing and then clearing the cache meanwhile.
async fn listen(
    urls: Vec<String>,
    channel: String,
    instance: String,
    timeout: Duration,
    cache: CacheHandle,
    state: Arc<FeedState>,
    publisher: RedisStore,
) {
    let mut attempt: usize = 0;
    loop {
        let url = &urls[attempt % urls.len().max(1)];
        let subscribed = bounded(timeout, async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok(pubsub)
        })
        .await;
        let pubsub = match subscribed {
            Ok(p) => p,
            Err(e) => {
                if attempt.is_multiple_of(20) {
                    tracing::warn!(error = %e, "cache invalidation feed down: cache bypassed");
                }
                attempt = attempt.wrapping_add(1);
                let backoff = Duration::from_millis(50 * (attempt.min(10) as u64));
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if attempt > 0 {
            tracing::info!("cache invalidation feed back: cache in use again");
        }
        // Messages may have been missed while we were away.
        cache.drop_all();
        state.live.store(true, Ordering::Release);
        let (mut sink, mut stream) = pubsub.split();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    apply(&payload, &instance, &cache, &state, &publisher, &channel, timeout).await;
                }
                _ = heartbeat.tick() => {
                    let pong = bounded(timeout, sink.ping::<redis::Value>()).await;
                    if pong.is_err() {
                        break;
                    }
                }
            }
        }
        state.live.store(false, Ordering::Release);
        state.epoch.fetch_add(1, Ordering::AcqRel);
        cache.drop_all();
        tracing::warn!("cache invalidation feed lost: cache bypassed until it is back");
        attempt = 1;
    }
}

async fn apply(
    payload: &str,
    me: &str,
    cache: &CacheHandle,
    state: &FeedState,
    publisher: &RedisStore,
    channel: &str,
    timeout: Duration,
) {
    let mut parts = payload.splitn(4, ' ');
    let (Some(kind), Some(sender), Some(nonce)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    match kind {
        "ack" if sender == me => {
            if let Ok(n) = nonce.parse::<u64>() {
                state.update(n, true, None);
            }
        }
        "inv" if sender == me => {
            // Our own write: the cache already has it; our subscription counts as one receiver.
            if let Ok(n) = nonce.parse::<u64>() {
                state.update(n, true, None);
            }
        }
        "inv" => {
            for hex in parts.next().unwrap_or_default().split(',') {
                if let Some(key) = TokenHash::from_hex(hex) {
                    cache.drop_key(key).await;
                }
            }
            let ack = format!("ack {sender} {nonce}");
            let publisher = publisher.clone();
            let channel = channel.to_owned();
            tokio::spawn(async move {
                let Ok(mut c) = publisher.conn().await else {
                    return;
                };
                let sent = bounded(
                    timeout,
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&ack)
                        .query_async::<i64>(&mut c),
                )
                .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "cannot acknowledge a cache invalidation");
                }
            });
        }
        _ => {}
    }
}
