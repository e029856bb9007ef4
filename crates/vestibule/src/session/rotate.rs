//! Moving a session to a new token: rotation (`cycle_id`), login on the cookie or as a bearer
//! token, the anonymous restart that holds a pending second factor, and the record creation they
//! share. A new token at every change of who the session belongs to is what defeats session
//! fixation.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::handle::{CookieAction, State};
use super::{
    AUTH_USER_KEY, Record, Session, SessionUser, StoreError, Transport, UnixTime, merge_pending,
    secs,
};
use crate::error::{Error, ErrorCode};
use crate::token::{SecretToken, TokenKind};

impl Session {
    /// Moves the data to a new token and kills the old one (Django's `cycle_key`): an attacker who
    /// planted or learned the old token holds nothing afterwards.
    ///
    /// # Errors
    /// `store_unavailable`.
    pub async fn cycle_id(&self) -> Result<(), Error> {
        let mut st = self.loaded().await?;
        let Some(old) = st.record.clone() else {
            return Ok(());
        };
        let mut data = old.stored_data().into_owned();
        merge_pending(&mut data, std::mem::take(&mut st.pending));
        self.replace(&mut st, Some(&old), old.user_id, data).await
    }

    /// Starts an authenticated session for `user` on a new token (login). Data of an anonymous
    /// session carries over; a session of another user is flushed, not inherited.
    pub(crate) async fn login(&self, user: SessionUser) -> Result<(), Error> {
        let mut st = self.writable().await?;
        let old = st.record.clone();
        let mut data = Map::new();
        if let Some(old) = &old
            && (old.user_id.is_none() || old.user_id == Some(user.id))
        {
            data = old.stored_data().into_owned();
        }
        merge_pending(&mut data, std::mem::take(&mut st.pending));
        let user_id = user.id;
        data.insert(
            AUTH_USER_KEY.to_owned(),
            serde_json::to_value(user).map_err(Error::internal)?,
        );
        self.replace(&mut st, old.as_deref(), Some(user_id), data)
            .await
    }

    /// Bearer session tokens need a store to look them up in: the cookie store has none.
    fn bearer_supported(&self) -> Result<(), Error> {
        if self.inner.manager.sealed.is_some() {
            return Err(Error::new(
                ErrorCode::BearerNotSupported,
                "the cookie session store cannot issue bearer session tokens",
            )
            .with_hint(
                "log in with the cookie, or use a personal access token (POST /auth/tokens) for scripts",
            ));
        }
        Ok(())
    }

    /// Starts a new, independent session for `user` whose token travels as `Authorization:
    /// Bearer` (login with `"transport": "bearer"`). The request's own session is left alone and
    /// no cookie is set. Returns the token (shown once) and its expiry.
    pub(crate) async fn login_bearer(
        &self,
        mut user: SessionUser,
    ) -> Result<(SecretToken, UnixTime), Error> {
        self.bearer_supported()?;
        user.transport = Transport::Bearer;
        let user_id = user.id;
        let mut data = Map::new();
        data.insert(
            AUTH_USER_KEY.to_owned(),
            serde_json::to_value(user).map_err(Error::internal)?,
        );
        let (record, token) = self.create(Some(user_id), data, None).await?;
        Ok((token, record.expires_at.min(record.absolute_expires_at)))
    }

    /// Moves this session to a new token as an anonymous session holding `key` = `value` (the
    /// pending second-factor state after a correct password): a logged-in user's data is dropped,
    /// an anonymous session's kept. The record exists when this returns, so the answer can carry
    /// its CSRF token.
    pub(crate) async fn restart_anonymous(&self, key: &str, value: Value) -> Result<(), Error> {
        let mut st = self.writable().await?;
        let old = st.record.clone();
        let mut data = Map::new();
        if let Some(old) = &old
            && old.user_id.is_none()
        {
            data = old.stored_data().into_owned();
        }
        merge_pending(&mut data, std::mem::take(&mut st.pending));
        data.remove(AUTH_USER_KEY);
        data.insert(key.to_owned(), value);
        self.replace(&mut st, old.as_deref(), None, data).await
    }

    /// Creates a new, independent anonymous session holding `data` whose token travels as
    /// `Authorization: Bearer` (the pending second-factor state of a bearer login), dead at
    /// `until` at the latest: the record's absolute expiry, which the store enforces and no
    /// request slides past, so the token dies with what it was made for instead of lingering
    /// for the idle timeout. Returns the token and its expiry.
    pub(crate) async fn create_bearer(
        &self,
        data: Map<String, Value>,
        until: UnixTime,
    ) -> Result<(SecretToken, UnixTime), Error> {
        self.bearer_supported()?;
        let (record, token) = self.create(None, data, Some(until)).await?;
        Ok((token, record.expires_at.min(record.absolute_expires_at)))
    }

    /// The current token and its expiry, for a bearer session that has just rotated.
    pub(crate) async fn current_token(&self) -> Option<(SecretToken, UnixTime)> {
        let st = self.inner.state.lock().await;
        match (&st.token, &st.record) {
            (Some(t), Some(r)) => Some((t.clone(), r.expires_at.min(r.absolute_expires_at))),
            _ => None,
        }
    }

    /// Creates a new record with a fresh token, deletes `old`, and arranges the cookie.
    async fn replace(
        &self,
        st: &mut State,
        old: Option<&Record>,
        user_id: Option<i64>,
        data: Map<String, Value>,
    ) -> Result<(), Error> {
        let (record, token) = self.create(user_id, data, None).await?;
        st.token = Some(token);
        // A new identity: a sealed session takes the user's current generation at commit.
        st.generation = None;
        if let Some(old) = old {
            self.inner.manager.store.delete(&old.key).await?;
        }
        st.record = Some(Arc::new(record));
        st.cookie = CookieAction::Set;
        Ok(())
    }

    /// Creates a record under a new token (retrying once on the astronomically unlikely collision).
    /// Its absolute expiry is `session.absolute_timeout` from now, or `until` when that is earlier.
    pub(super) async fn create(
        &self,
        user_id: Option<i64>,
        data: Map<String, Value>,
        until: Option<UnixTime>,
    ) -> Result<(Record, SecretToken), Error> {
        let cfg = &self.inner.manager.config;
        let t = self.inner.started;
        let mut absolute = t + secs(cfg.absolute_timeout);
        if let Some(until) = until {
            absolute = absolute.min(until);
        }
        let mut attempt = 0;
        loop {
            let token = SecretToken::generate(TokenKind::Session);
            let mut record = Record {
                key: token.hash(),
                user_id,
                user: None,
                data: data.clone(),
                created_at: t,
                last_seen: t,
                expires_at: (t + secs(cfg.idle_for(user_id))).min(absolute),
                absolute_expires_at: absolute,
                user_agent: self.user_agent_text(),
            };
            // The data as built here holds the user under its key (login); the record holds it
            // typed.
            record.take_user_from_data().map_err(Error::internal)?;
            match self.inner.manager.store.create(&record).await {
                Ok(()) => return Ok((record, token)),
                Err(StoreError::Collision) if attempt == 0 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
