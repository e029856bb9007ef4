//! Second factors over HTTP: completing a pending login (the library's login flow records it
//! after a correct password: [`crate::auth::login`]) with TOTP or a recovery code, TOTP
//! enrolment, the factor status, recovery codes, and the second factor of a re-authentication.
//! Passkeys are in `passkeys.rs`.
//!
//! Recovery codes come as a set of ten, shown once: at TOTP confirmation, at the registration of
//! a passkey when the account has no set yet (a passkey-only account), and from
//! `POST /auth/mfa/recovery/regenerate`. Removing the last second factor deletes the set.

use crate::server::openapi::{JsonBodyErrors, StoreErrors};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, PublicKeyCredential};

use super::AuthBody;
use super::webauthn::{from_value, take_ceremony, touch, webauthn, webauthn_failed};
use crate::auth::login::pending_login;
use crate::auth::mfa;
use crate::auth::reauth::{record_factor_proof, require_recent_factor};
use crate::auth::{AccountUser, PendingLogin, Proof};
use crate::error::{Error, ErrorCode, Result};
use crate::server::json::Json;
use crate::server::openapi::ErrorBody;
use crate::server::{AppState, ClientIp};
use crate::session::{Session, now};

/// Counts an attempt at a second factor against the account's budget.
pub(super) async fn check_rate(app: &AppState, user_id: i64) -> Result<()> {
    app.limits.mfa_user.take(&user_id).await.map_err(|l| {
        app.limited(
            l,
            "second-factor attempts for this account",
            "rate_limits.mfa_per_user",
        )
    })
}

/// The gate of every route that adds or removes a second factor or recovery codes: a recent
/// password and, on an account that has a second factor, a recent second factor too
/// ([`require_recent_factor`]).
pub(super) async fn require_factor_reauth(
    app: &AppState,
    session: &Session,
    user_id: i64,
) -> Result<()> {
    let has_factor = app.mfa.store.methods(user_id).await?.any();
    require_recent_factor(session, app.reauth_window, has_factor).await
}

/// Audits the removal of the account's last second factor (the account is back to the password
/// alone: worth an alert of its own).
pub(super) async fn audit_if_last_factor(app: &AppState, user_id: i64, method: &str) -> Result<()> {
    if !app.mfa.store.methods(user_id).await?.any() {
        audit!(
            "mfa.last_factor_removed",
            user_id,
            method,
            "the account's last second factor was removed: the password alone logs in"
        );
    }
    Ok(())
}

fn refused(app: &AppState, p: &PendingLogin, ip: std::net::IpAddr, method: &str) -> Error {
    app.login_failed("mfa_code_invalid");
    audit!("login.failure", reason = "mfa_code_invalid", method, user_id = p.user_id(), client_ip = %ip, "second factor refused");
    Error::new(
        ErrorCode::MfaCodeInvalid,
        "the code is wrong, expired or already used",
    )
}

/// Logs the pending user in with the library's flow (the pending state ends, the session
/// rotates or a new bearer token replaces the pending one).
pub(super) async fn complete(
    app: &AppState,
    session: &Session,
    p: &PendingLogin,
    ip: std::net::IpAddr,
    proof: Proof,
) -> Result<Response> {
    let login = app.login.for_caller(ip, HeaderMap::new());
    Ok(login
        .complete_pending(session, p, proof)
        .await?
        .into_response())
}

/// `{"code"}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct CodeBody {
    /// A 6-digit TOTP code, or a recovery code.
    code: String,
}

/// Seconds since the epoch for TOTP (the clock is after 1970 on any machine that runs this).
fn unix_now() -> u64 {
    u64::try_from(now()).unwrap_or(0)
}

/// Verifies a TOTP code of `user_id`'s confirmed authenticator and spends its time step.
pub(super) async fn totp_ok(app: &AppState, user_id: i64, code: &str) -> Result<bool> {
    let Some((sealed, true)) = app.mfa.store.totp(user_id).await? else {
        return Ok(false);
    };
    let secret = app.mfa.secrets.open(user_id, &sealed)?;
    match mfa::matching_step(&secret, code, unix_now()) {
        Some(step) => {
            let step = i64::try_from(step).map_err(Error::internal)?;
            app.mfa
                .store
                .totp_accept(user_id, step, false, &crate::email::Notice::none())
                .await
        }
        None => Ok(false),
    }
}

/// Completes a pending login with a TOTP code (once per code, ±30 s).
#[utoipa::path(
    post,
    path = "/auth/mfa/totp",
    tag = "mfa",
    request_body = CodeBody,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 200, description = "Logged in, as `POST /auth/login` answers", body = AuthBody),
        (status = 401, description = "`mfa_code_invalid` (wrong, expired or replayed), `mfa_not_pending`", body = ErrorBody),
        (status = 403, description = "`account_disabled`, or a CSRF refusal", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_mfa_totp(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<CodeBody>,
) -> Result<Response> {
    let p = pending_login(&session).await?;
    check_rate(&app, p.user_id()).await?;
    if !totp_ok(&app, p.user_id(), &body.code).await? {
        return Err(refused(&app, &p, ip, "totp"));
    }
    complete(&app, &session, &p, ip, Proof::Totp).await
}

/// Completes a pending login with a recovery code (each works once).
#[utoipa::path(
    post,
    path = "/auth/mfa/recovery",
    tag = "mfa",
    request_body = CodeBody,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 200, description = "Logged in, as `POST /auth/login` answers", body = AuthBody),
        (status = 401, description = "`mfa_code_invalid` (unknown or used), `mfa_not_pending`", body = ErrorBody),
        (status = 403, description = "`account_disabled`, or a CSRF refusal", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_mfa_recovery(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<CodeBody>,
) -> Result<Response> {
    let p = pending_login(&session).await?;
    check_rate(&app, p.user_id()).await?;
    let used = body.code.len() <= 64
        && app
            .mfa
            .store
            .use_recovery_code(p.user_id(), &mfa::recovery_hash(&body.code))
            .await?;
    if !used {
        return Err(refused(&app, &p, ip, "recovery"));
    }
    audit!(
        "mfa.recovery_used",
        user_id = p.user_id(),
        "recovery code spent"
    );
    complete(&app, &session, &p, ip, Proof::RecoveryCode).await
}

/// `{"secret", "otpauth_uri", "qr_svg"}`: a TOTP enrolment to confirm with a first code.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpEnrolment {
    /// The secret in base32, for typing into an app.
    secret: String,
    /// `otpauth://totp/…` (SHA-1, 6 digits, 30 s).
    otpauth_uri: String,
    /// The URI as an SVG QR code.
    qr_svg: String,
}

/// Starts a TOTP enrolment (inactive until confirmed; a new call replaces an unconfirmed one).
#[utoipa::path(
    post,
    path = "/auth/mfa/totp/enroll",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The secret, URI and QR code", body = TotpEnrolment),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: re-authenticate with one), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 409, description = "`mfa_already_enabled`: remove the authenticator first", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_totp_enroll(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<axum::Json<TotpEnrolment>> {
    require_factor_reauth(&app, &session, user.id).await?;
    let secret = mfa::new_totp_secret();
    let sealed = app.mfa.secrets.seal(user.id, &secret)?;
    if !app.mfa.store.totp_begin(user.id, &sealed).await? {
        return Err(
            Error::new(ErrorCode::MfaAlreadyEnabled, "TOTP is enabled already")
                .with_hint("DELETE /auth/mfa/totp first to enrol another authenticator"),
        );
    }
    let (secret, otpauth_uri, qr_svg) = mfa::enrolment(&secret, &user.username, &app.mfa.issuer)?;
    Ok(axum::Json(TotpEnrolment {
        secret,
        otpauth_uri,
        qr_svg,
    }))
}

/// `{"recovery_codes"}`: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecoveryCodes {
    /// Ten single-use codes; store them offline.
    recovery_codes: Vec<String>,
}

/// Confirms a TOTP enrolment with a first code: TOTP is on, and ten recovery codes are issued.
#[utoipa::path(
    post,
    path = "/auth/mfa/totp/confirm",
    tag = "mfa",
    request_body = CodeBody,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 200, description = "Enabled: the recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "`mfa_code_invalid`, `not_authenticated`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: re-authenticate with one), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`mfa_not_enabled`: no enrolment waits for confirmation", body = ErrorBody),
        (status = 409, description = "`mfa_already_enabled`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_totp_confirm(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Json(body): Json<CodeBody>,
) -> Result<axum::Json<RecoveryCodes>> {
    require_factor_reauth(&app, &session, user.id).await?;
    check_rate(&app, user.id).await?;
    let (sealed, confirmed) = app.mfa.store.totp(user.id).await?.ok_or_else(|| {
        Error::new(ErrorCode::MfaNotEnabled, "no TOTP enrolment to confirm")
            .with_hint("POST /auth/mfa/totp/enroll first")
    })?;
    if confirmed {
        return Err(Error::new(
            ErrorCode::MfaAlreadyEnabled,
            "TOTP is enabled already",
        ));
    }
    let secret = app.mfa.secrets.open(user.id, &sealed)?;
    let step = mfa::matching_step(&secret, &body.code, unix_now());
    let ok = match step {
        Some(s) => {
            let s = i64::try_from(s).map_err(Error::internal)?;
            // "A second factor was added" commits with the confirmation.
            let notice = super::email::notice(
                &app,
                user.id,
                &crate::email::SecurityNotice::SecondFactor(true, "TOTP"),
            )
            .await?;
            let ok = app.mfa.store.totp_accept(user.id, s, true, &notice).await?;
            if ok {
                super::email::notice_written(&app, &notice);
            }
            ok
        }
        None => false,
    };
    if !ok {
        audit!(
            "mfa.enable_failure",
            user_id = user.id,
            "TOTP confirmation refused"
        );
        return Err(Error::new(ErrorCode::MfaCodeInvalid, "the code is wrong")
            .with_hint("check the device clock; codes change every 30 s"));
    }
    let (codes, hashes) = new_codes();
    app.mfa.store.set_recovery_codes(user.id, &hashes).await?;
    audit!(
        "mfa.enable",
        user_id = user.id,
        method = "totp",
        "TOTP enabled"
    );
    // The confirming code proved the factor: this session may go on managing factors.
    record_factor_proof(&session, user.id).await?;
    Ok(axum::Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// A new set of recovery codes and their stored form.
pub(super) fn new_codes() -> (Vec<String>, Vec<[u8; 32]>) {
    let codes = mfa::new_recovery_codes();
    let hashes = codes.iter().map(|c| mfa::recovery_hash(c)).collect();
    (codes, hashes)
}

/// `{"totp", "passkeys", "recovery_codes_left"}`: the signed-in user's second factors.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MfaStatus {
    /// Whether a confirmed TOTP authenticator is on.
    totp: bool,
    /// How many passkeys are registered.
    passkeys: i64,
    /// Recovery codes not used yet (0 when there is no second factor).
    recovery_codes_left: i64,
}

/// The signed-in user's second factors and how many recovery codes are left.
#[utoipa::path(
    get,
    path = "/auth/mfa",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The second factors", body = MfaStatus),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required` (an access token)", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_mfa(
    State(app): State<AppState>,
    user: AccountUser,
) -> Result<axum::Json<MfaStatus>> {
    let m = app.mfa.store.methods(user.id).await?;
    Ok(axum::Json(MfaStatus {
        totp: m.totp,
        passkeys: m.passkeys,
        recovery_codes_left: if m.any() { m.recovery_codes } else { 0 },
    }))
}

/// Replaces the recovery codes with ten new ones (the old ones stop working at once).
#[utoipa::path(
    post,
    path = "/auth/mfa/recovery/regenerate",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The new recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (re-authenticate with a second factor), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 409, description = "`mfa_factor_required`: no second factor to recover", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`rate_limits.mfa_per_user`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_recovery_regenerate(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<axum::Json<RecoveryCodes>> {
    require_factor_reauth(&app, &session, user.id).await?;
    check_rate(&app, user.id).await?;
    let (codes, hashes) = new_codes();
    if !app
        .mfa
        .store
        .regenerate_recovery_codes(user.id, &hashes)
        .await?
    {
        return Err(Error::new(
            ErrorCode::MfaFactorRequired,
            "this account has no second factor, so it has no recovery codes",
        )
        .with_hint(
            "enrol TOTP (POST /auth/mfa/totp/enroll) or register a passkey first: either issues the codes",
        ));
    }
    audit!(
        "mfa.recovery_regenerate",
        user_id = user.id,
        "recovery codes replaced"
    );
    Ok(axum::Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Removes the TOTP authenticator, and the recovery codes when no passkey is left.
#[utoipa::path(
    delete,
    path = "/auth/mfa/totp",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 204, description = "Removed"),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: re-authenticate with one), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`mfa_not_enabled`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn delete_totp(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<StatusCode> {
    require_factor_reauth(&app, &session, user.id).await?;
    let notice = super::email::notice(
        &app,
        user.id,
        &crate::email::SecurityNotice::SecondFactor(false, "TOTP"),
    )
    .await?;
    if !app.mfa.store.totp_remove(user.id, &notice).await? {
        return Err(Error::new(ErrorCode::MfaNotEnabled, "TOTP is not enabled"));
    }
    super::email::notice_written(&app, &notice);
    audit!(
        "mfa.disable",
        user_id = user.id,
        method = "totp",
        "TOTP removed"
    );
    audit_if_last_factor(&app, user.id, "totp").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The second factor sent with `POST /auth/reauth` (at most one).
pub(super) enum ReauthFactor<'a> {
    /// A TOTP code of the confirmed authenticator.
    Totp(&'a str),
    /// An unused recovery code (spent by this proof).
    Recovery(&'a str),
    /// The answer to the challenge of `POST /auth/reauth/webauthn/start`.
    Passkey(&'a PublicKeyCredential),
}

/// Verifies a second factor of `user_id` for a re-authentication, against the account's
/// second-factor budget (`rate_limits.mfa_per_user`). On success the session records the proof
/// ([`record_factor_proof`]); on failure: 401 `mfa_code_invalid` or `webauthn_failed`.
pub(super) async fn verify_reauth_factor(
    app: &AppState,
    session: &Session,
    user_id: i64,
    ip: std::net::IpAddr,
    factor: ReauthFactor<'_>,
) -> Result<&'static str> {
    check_rate(app, user_id).await?;
    let method = match factor {
        ReauthFactor::Totp(code) => {
            if !totp_ok(app, user_id, code).await? {
                audit!("reauth.failure", reason = "mfa_code_invalid", method = "totp", user_id, client_ip = %ip);
                return Err(Error::new(
                    ErrorCode::MfaCodeInvalid,
                    "the code is wrong, expired or already used",
                ));
            }
            "totp"
        }
        ReauthFactor::Recovery(code) => {
            let used = code.len() <= 64
                && app
                    .mfa
                    .store
                    .use_recovery_code(user_id, &mfa::recovery_hash(code))
                    .await?;
            if !used {
                audit!("reauth.failure", reason = "mfa_code_invalid", method = "recovery", user_id, client_ip = %ip);
                return Err(Error::new(
                    ErrorCode::MfaCodeInvalid,
                    "the recovery code is unknown or already used",
                ));
            }
            audit!("mfa.recovery_used", user_id, "recovery code spent");
            "recovery"
        }
        ReauthFactor::Passkey(credential) => {
            let wa = webauthn(app)?;
            let c = take_ceremony(session, "reauth").await?;
            let state: PasskeyAuthentication = from_value(c.state)?;
            let res = match wa.finish_passkey_authentication(credential, &state) {
                Ok(r) => r,
                Err(e) => {
                    audit!("reauth.failure", reason = "webauthn_failed", user_id, client_ip = %ip, error = %e);
                    return Err(webauthn_failed("the passkey's answer did not verify"));
                }
            };
            for s in app.mfa.store.passkeys(user_id).await? {
                if let Ok(key) = serde_json::from_str::<Passkey>(&s.passkey)
                    && key.cred_id() == res.cred_id()
                {
                    touch(app, s.id, key, &res).await?;
                }
            }
            "webauthn"
        }
    };
    record_factor_proof(session, user_id).await?;
    Ok(method)
}
