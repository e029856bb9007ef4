//! The WebAuthn plumbing the passkey routes share: the relying party (or why passkeys are off),
//! the ceremony state kept in the session between a start and its finish (single use, five
//! minutes), assertion starts and signature-counter updates.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::Passkey;

use crate::auth::login::PENDING_SECS;
use crate::error::{Error, ErrorCode, Result};
use crate::server::AppState;
use crate::session::{Session, UnixTime, now};

/// Session key of a WebAuthn ceremony in progress (its challenge: single use).
pub(super) const CEREMONY_KEY: &str = "_webauthn";

pub(super) fn webauthn(app: &AppState) -> Result<Arc<Webauthn>> {
    app.mfa.webauthn.webauthn.clone().map_err(|why| {
        Error::new(
            ErrorCode::PasskeysUnavailable,
            "passkeys are off on this server",
        )
        .with_hint(why)
    })
}

pub(super) fn webauthn_failed(why: impl Into<String>) -> Error {
    Error::new(ErrorCode::WebauthnFailed, why)
}

/// A ceremony's state, kept in the session between start and finish.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ceremony {
    pub(super) kind: String,
    pub(super) expires_at: UnixTime,
    pub(super) state: Value,
    /// Registration: the user handle the authenticator will keep.
    #[serde(default)]
    pub(super) user_handle: Option<Vec<u8>>,
}

pub(super) async fn save_ceremony(
    session: &Session,
    kind: &str,
    state: Value,
    handle: Option<Vec<u8>>,
) -> Result<()> {
    let c = Ceremony {
        kind: kind.to_owned(),
        expires_at: now() + PENDING_SECS,
        state,
        user_handle: handle,
    };
    session.insert(CEREMONY_KEY, c).await
}

/// Takes the ceremony of `kind` out of the session (single use: a second finish finds nothing).
pub(super) async fn take_ceremony(session: &Session, kind: &str) -> Result<Ceremony> {
    let c: Option<Ceremony> = session.get(CEREMONY_KEY).await?;
    if c.is_some() {
        session.remove(CEREMONY_KEY).await?;
    }
    match c {
        Some(c) if c.kind == kind && c.expires_at > now() => Ok(c),
        _ => Err(webauthn_failed(
            "no WebAuthn challenge is pending in this session (none, used or expired)",
        )
        .with_hint("call the matching /start route first")),
    }
}

pub(super) fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(Error::internal)
}

pub(super) fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(Error::internal)
}

/// Starts a passkey assertion for one known user (a pending login's second factor, or a
/// re-authentication): the options for `navigator.credentials.get`, the ceremony state kept in
/// the session under `ceremony` until its finish.
pub(super) async fn start_assertion(
    app: &AppState,
    session: &Session,
    user_id: i64,
    ceremony: &str,
) -> Result<axum::Json<Value>> {
    let wa = webauthn(app)?;
    let keys: Vec<Passkey> = app
        .mfa
        .store
        .passkeys(user_id)
        .await?
        .iter()
        .filter_map(|k| serde_json::from_str(&k.passkey).ok())
        .collect();
    if keys.is_empty() {
        return Err(Error::new(
            ErrorCode::MfaNotEnabled,
            "this account has no passkey",
        ));
    }
    let (rcr, state) = wa
        .start_passkey_authentication(&keys)
        .map_err(|e| webauthn_failed(format!("cannot start the authentication: {e}")))?;
    save_ceremony(session, ceremony, to_value(&state)?, None).await?;
    Ok(axum::Json(to_value(&rcr)?))
}

/// Saves the passkey's new signature counter.
pub(super) async fn touch(
    app: &AppState,
    stored_id: i64,
    mut key: Passkey,
    res: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<()> {
    if key.update_credential(res).is_some() {
        let json = serde_json::to_string(&key).map_err(Error::internal)?;
        app.mfa.store.touch_passkey(stored_id, &json).await?;
    }
    Ok(())
}
