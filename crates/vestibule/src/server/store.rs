//! The session store a configuration asks for, built once at start-up (and the read cache's
//! watch for other processes' writes).

use std::sync::Arc;

use super::*;

/// The sessions as the administrator's commands (`vestibule session revoke`, `user disable`,
/// `user delete`) end them: the configured store under a [`SessionManager`] whose end hook,
/// when providers are configured, is the relying party, so that ending sessions from the
/// command line revokes their provider tokens as the server does. The revocations run in the
/// background: call [`crate::auth::oidc::RelyingParty::settle`] on the second value before the
/// command exits.
///
/// # Errors
/// As [`build_store`]; 500 `internal` when the relying party's HTTP client cannot be built.
pub fn admin_sessions(
    config: &Config,
    db: &Database,
) -> Result<(SessionManager, Option<crate::auth::oidc::RelyingParty>), StartError> {
    let store = build_store(config, db)?.0;
    let rp = relying_party(config, db)?;
    let mut sessions = SessionManager::new(store, config.session.clone());
    if let Some(rp) = &rp {
        sessions = sessions.with_end_hook(Arc::new(rp.clone()));
    }
    Ok((sessions, rp))
}

/// The OpenID Connect relying party, when providers are configured.
///
/// # Errors
/// 500 `internal` when its HTTP client cannot be built (no TLS roots).
pub(super) fn relying_party(
    config: &Config,
    db: &Database,
) -> Result<Option<crate::auth::oidc::RelyingParty>, StartError> {
    if config.oidc.providers.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::auth::oidc::RelyingParty::new(
        config.oidc.clone(),
        config.public_origin.clone(),
        config.origins.clone(),
        crate::auth::oidc::Identities::new(db.clone()),
        UserStore::new(db.clone()),
        crate::auth::mfa::SecretBox::new(config.mfa_key),
    )?))
}

/// The session store, and the SQLite read cache when there is one (see [`build_store`]).
pub type BuiltStore = (Arc<dyn SessionStore>, Option<CachedStore<SqliteStore>>);

/// Builds the session store the configuration asks for; also returns the read cache, if any, so
/// the server can drop it when another process writes to the database. Redis stores connect
/// lazily (a server started while Redis is down is up but not ready); the coherent cache starts
/// its pub/sub listener, so this must run inside a Tokio runtime.
///
/// # Errors
/// [`StartError::Other`] when the Redis configuration is unusable.
pub fn build_store(config: &Config, db: &Database) -> Result<BuiltStore, StartError> {
    build_store_sharing(config, db, &mut None)
}

/// [`build_store`], also handing out the Redis store (when there is one) so the rate limits can
/// share its connection and prefix.
pub(super) fn build_store_sharing(
    config: &Config,
    db: &Database,
    shared_redis: &mut Option<RedisStore>,
) -> Result<BuiltStore, StartError> {
    let mut redis = || -> Result<(RedisStore, crate::session::stores::RedisConfig), StartError> {
        let rc = config.redis.clone().ok_or_else(|| {
            crate::Error::new(
                crate::error::ErrorCode::Internal,
                "session.store is Redis but no Redis URL is configured",
            )
        })?;
        let store = RedisStore::new(&rc).map_err(crate::Error::from)?;
        *shared_redis = Some(store.clone());
        Ok((store, rc))
    };
    Ok(match config.store {
        StoreKind::CachedSqlite => {
            let cached = CachedStore::new(SqliteStore::new(db.clone()), config.cache_capacity);
            (Arc::new(cached.clone()), Some(cached))
        }
        StoreKind::Sqlite => (Arc::new(SqliteStore::new(db.clone())), None),
        StoreKind::Memory => (Arc::new(MemoryStore::new(config.cache_capacity)), None),
        // Sessions are in the cookies; `App::build` adds the sealing backend to the manager.
        StoreKind::Cookie => (
            Arc::new(crate::session::stores::StatelessStore::new(Arc::new(
                UserStore::new(db.clone()),
            ))),
            None,
        ),
        StoreKind::Redis => {
            // No cache here, yet its writes are announced: instances with a cache on the same
            // Redis drop what this one changes (see `CachedStore::announcing`).
            let (store, rc) = redis()?;
            let publisher = store.clone();
            let announcing = CachedStore::announcing(store, |handle| {
                let feed: Arc<dyn Invalidation> = RedisInvalidation::start(publisher, &rc, handle);
                feed
            });
            (Arc::new(announcing), None)
        }
        StoreKind::CachedRedis => {
            let (store, rc) = redis()?;
            let publisher = store.clone();
            let cached = CachedStore::coherent(store, config.cache_capacity, |handle| {
                let feed: Arc<dyn Invalidation> = RedisInvalidation::start(publisher, &rc, handle);
                feed
            });
            (Arc::new(cached), None)
        }
    })
}

/// Drops the read cache whenever another process commits to the database (e.g. `vestibule user
/// disable` ends a user's sessions), so a running server honours it within a second.
pub(super) async fn watch_outside_changes(db: Database, cache: CachedStore<SqliteStore>) {
    let mut last = None;
    let mut tick = tokio::time::interval(OUTSIDE_CHANGE_POLL);
    loop {
        tick.tick().await;
        match db.external_data_version().await {
            Ok(v) => {
                if last.is_some_and(|l| l != v) {
                    tracing::debug!("database changed by another process: session cache dropped");
                    cache.invalidate_all();
                }
                last = Some(v);
            }
            Err(e) => tracing::warn!(error = %e, "cannot check the database for outside changes"),
        }
    }
}
