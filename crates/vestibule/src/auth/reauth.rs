//! Re-authentication for sensitive actions (OWASP ASVS 5.0 7.5.1, 7.5.3): changing the password,
//! creating an access token, ending sessions and adding or removing a second factor need a
//! session that proved a credential recently, so a hijacked or forgotten-open session cannot
//! take the account over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};
use crate::session::{Session, UnixTime, now};

/// Session key of the last second-factor proof of this session ("aal2": a TOTP code, a recovery
/// code or a passkey assertion given at login, at `POST /auth/reauth`, or by enrolling the
/// factor). Kept beside the password proof (`auth_time`), which alone is "aal1".
pub const FACTOR_PROOF_KEY: &str = "_reauth_factor";

/// When a session proved a second factor, and for whom (a proof is worth nothing for another
/// user, should the session ever change hands without a flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorProof {
    /// The user who proved it.
    pub user_id: i64,
    /// When (Unix seconds).
    pub at: UnixTime,
}

/// Records that this session's user proved a second factor now.
///
/// # Errors
/// `store_unavailable`.
pub async fn record_factor_proof(session: &Session, user_id: i64) -> Result<(), Error> {
    let proof = FactorProof { user_id, at: now() };
    session.insert(FACTOR_PROOF_KEY, proof).await
}

/// The check of every route that manages second factors (add or remove TOTP, passkeys, recovery
/// codes): a recent password ([`require_recent`]) and, when the account has a second factor
/// (`has_factor`), a second factor proved by this session within the same `window`. Without it
/// a stolen session plus a phished password could strip the factor (ASVS 6.3.x, 7.5.1).
///
/// # Errors
/// What [`require_recent`] answers; 403 `mfa_reauth_required` when the factor proof is missing,
/// stale or another user's.
pub async fn require_recent_factor(
    session: &Session,
    window: Duration,
    has_factor: bool,
) -> Result<(), Error> {
    require_recent(session, window).await?;
    if !has_factor {
        return Ok(());
    }
    let user = session.user().await?.ok_or_else(Error::not_authenticated)?;
    let proof: Option<FactorProof> = session.get(FACTOR_PROOF_KEY).await?;
    match proof {
        Some(p) if p.user_id == user.id && is_recent(p.at, now(), window) => Ok(()),
        _ => Err(factor_reauth_required(window)),
    }
}

/// 403 `mfa_reauth_required`.
pub fn factor_reauth_required(window: Duration) -> Error {
    Error::new(
        ErrorCode::MfaReauthRequired,
        format!(
            "managing second factors needs the password and a second factor proved within the last {} minutes",
            window.as_secs().div_ceil(60)
        ),
    )
    .with_hint(
        "POST /auth/reauth with {\"password\", \"code\"} (TOTP), {\"password\", \"recovery_code\"}, or {\"password\", \"credential\"} after POST /auth/reauth/webauthn/start, then retry",
    )
}

/// Default of `auth.reauth_window`: how long a proof of the password (login, signup,
/// `POST /auth/reauth`) lets a session perform sensitive actions.
pub const DEFAULT_REAUTH_WINDOW: Duration = Duration::from_secs(600);

/// Whether a proof at `auth_time` still covers a sensitive action at `at` under `window`.
/// A proof stamped in the future (clock step backwards) counts as fresh only up to `at`.
pub fn is_recent(auth_time: UnixTime, at: UnixTime, window: Duration) -> bool {
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    at.saturating_sub(auth_time) <= window
}

/// The one check every sensitive route calls (the MFA routes too): the session's user proved a
/// credential within `window`.
///
/// # Errors
/// 401 `not_authenticated` without a user; 403 `reauth_required` (with a hint naming
/// `POST /auth/reauth`) when the proof is older than `window`; `store_unavailable`.
pub async fn require_recent(session: &Session, window: Duration) -> Result<(), Error> {
    let user = session.user().await?.ok_or_else(Error::not_authenticated)?;
    if is_recent(user.auth_time, now(), window) {
        return Ok(());
    }
    Err(reauth_required(window))
}

/// 403 `reauth_required`.
pub fn reauth_required(window: Duration) -> Error {
    Error::new(
        ErrorCode::ReauthRequired,
        format!(
            "this action needs a password proved within the last {} minutes",
            window.as_secs().div_ceil(60)
        ),
    )
    .with_hint("POST /auth/reauth {\"password\": \"…\"} with the current password, then retry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_are_inclusive_and_clock_steps_are_safe() {
        let w = Duration::from_secs(600);
        assert!(is_recent(1_000, 1_000, w));
        assert!(is_recent(1_000, 1_600, w));
        assert!(!is_recent(1_000, 1_601, w));
        assert!(
            is_recent(2_000, 1_000, w),
            "a proof from the future is fresh"
        );
        assert!(!is_recent(i64::MIN, i64::MAX, w), "no overflow");
        assert!(is_recent(0, 10, Duration::MAX));
    }

    #[test]
    fn refusal_names_the_way_out() {
        let e = reauth_required(DEFAULT_REAUTH_WINDOW);
        assert_eq!(e.code(), ErrorCode::ReauthRequired);
        assert!(e.to_string().contains("10 minutes"), "{e}");
    }
}
