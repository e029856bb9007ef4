//! Saving a session when the response leaves: the pending delta (or the new record of a first
//! write), the throttled expiry touch, and the `Set-Cookie` that follows — a token, or with the
//! cookie backend the re-sealed session.

use std::sync::Arc;

use serde_json::Map;

use super::handle::CookieAction;
use super::{Delta, Record, Session, Transport, merge_pending, secs};
use crate::error::Error;

impl Session {
    /// Whether [`Session::commit`] could have anything to do: a write, a cookie change or an
    /// expiry extension. Cheap and synchronous, so the common read-only request skips the commit.
    pub(crate) fn needs_commit(&self, save: bool) -> bool {
        let Ok(st) = self.inner.state.try_lock() else {
            return true;
        };
        if st.cookie != CookieAction::Keep || (save && !st.pending.is_empty()) {
            return true;
        }
        let touch = secs(self.inner.manager.config.touch_interval);
        save && !st.no_touch
            && st
                .record
                .as_ref()
                .is_some_and(|r| self.inner.started - r.last_seen >= touch)
    }

    /// Saves what the request changed and decides the cookie. Called by [`SessionLayer`] once the
    /// handler has answered. `save` is false for 5xx responses: nothing pending is written then.
    pub(crate) async fn commit(
        &self,
        save: bool,
    ) -> Result<Option<cookie::Cookie<'static>>, Error> {
        let mut st = self.inner.state.lock().await;
        let cfg = self.inner.manager.config.clone();
        let t = self.inner.started;
        if save && !st.pending.is_empty() {
            let pending = std::mem::take(&mut st.pending);
            match st.record.clone() {
                // Only a cookie session is created on first write: a bearer request has a live
                // session (or was refused), an access-token request has none to write.
                None if self.inner.transport != Transport::Cookie => {}
                None => {
                    let mut data = Map::new();
                    merge_pending(&mut data, pending);
                    if !data.is_empty() {
                        if let Some(limit) = &self.inner.manager.anonymous_limit {
                            let ip = self
                                .inner
                                .client_ip
                                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                            const KEY: &str = "rate_limits.anonymous_sessions_per_ip";
                            limit.budget.take(ip, KEY).inspect_err(|_| {
                                audit!("rate_limit", limit = KEY);
                            })?;
                        }
                        let (record, token) = self.create(None, data, None).await?;
                        st.token = Some(token);
                        st.record = Some(Arc::new(record));
                        st.cookie = CookieAction::Set;
                    }
                }
                Some(record) => {
                    let mut delta = Delta {
                        last_seen: t,
                        expires_at: (t + secs(cfg.idle_for(record.user_id)))
                            .min(record.absolute_expires_at),
                        ..Delta::default()
                    };
                    if st.no_touch {
                        delta.last_seen = record.last_seen;
                        delta.expires_at = record.expires_at;
                    }
                    for (k, v) in pending {
                        match v {
                            Some(v) => {
                                delta.set.insert(k, v);
                            }
                            None => delta.remove.push(k),
                        }
                    }
                    // A sealed session changed: its cookie must be re-sealed.
                    let refreshed = delta.expires_at != record.expires_at
                        || self.inner.manager.sealed.is_some();
                    let merged = self.save_record(&record, &delta).await?;
                    st.record = Some(merged);
                    if refreshed && st.cookie == CookieAction::Keep {
                        st.cookie = CookieAction::Set;
                    }
                }
            }
        } else if save
            && !st.no_touch
            && st.cookie == CookieAction::Keep
            && let Some(record) = st.record.clone()
            && t - record.last_seen >= secs(cfg.touch_interval)
        {
            let delta = Delta {
                last_seen: t,
                expires_at: (t + secs(cfg.idle_for(record.user_id)))
                    .min(record.absolute_expires_at),
                ..Delta::default()
            };
            let merged = self.save_record(&record, &delta).await?;
            st.record = Some(merged);
            st.cookie = CookieAction::Set;
        }
        if self.inner.transport != Transport::Cookie {
            return Ok(None);
        }
        Ok(match st.cookie {
            CookieAction::Keep => None,
            CookieAction::Remove => Some(cfg.cookie.removal()),
            CookieAction::Set => match (&st.record, &st.token, &self.inner.manager.sealed) {
                (Some(r), Some(token), None) => Some(
                    cfg.cookie
                        .build(token.expose().to_owned(), r.expires_at - t),
                ),
                (Some(r), Some(token), Some(backend)) => {
                    let value = backend
                        .seal_record(st.generation, r, token, &cfg.cookie.name)
                        .await?;
                    Some(cfg.cookie.build(value, r.expires_at - t))
                }
                _ => Some(cfg.cookie.removal()),
            },
        })
    }

    /// Merges `delta` into `record`: in the store, or (cookie backend) in the record that will be
    /// re-sealed into the cookie.
    async fn save_record(&self, record: &Record, delta: &Delta) -> Result<Arc<Record>, Error> {
        if self.inner.manager.sealed.is_some() {
            let mut merged = record.clone();
            merged.apply(delta);
            return Ok(Arc::new(merged));
        }
        Ok(self.inner.manager.store.save(&record.key, delta).await?)
    }
}
