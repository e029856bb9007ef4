//! Passkeys: registration (a discoverable credential; the account's first second factor brings
//! recovery codes), the list and removal, a passkey as the second factor of a pending login,
//! passwordless login, and the start of a passkey re-authentication.

use crate::server::openapi::{JsonBodyErrors, StoreErrors};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Uuid,
};

use super::mfa::{audit_if_last_factor, check_rate, complete, new_codes, require_factor_reauth};
use super::webauthn::{
    CEREMONY_KEY, Ceremony, from_value, save_ceremony, start_assertion, take_ceremony, to_value,
    touch, webauthn, webauthn_failed,
};
use super::{AuthBody, refuse_control_chars, refuse_dead_bearer};
use crate::auth::login::{PENDING_SECS, pending_login};
use crate::auth::reauth::record_factor_proof;
use crate::auth::{AccountUser, LoginTransport, Proof};
use crate::error::{Error, ErrorCode, Result};
use crate::server::json::Json;
use crate::server::openapi::ErrorBody;
use crate::server::{AppState, ClientIp};
use crate::session::{Session, now};

/// Starts registering a passkey for the logged-in user: the `navigator.credentials.create`
/// options (`{"publicKey": …}`, binary fields base64url). A discoverable credential is asked
/// for, so the passkey also serves passwordless login.
#[utoipa::path(
    post,
    path = "/auth/passkeys/register/start",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The creation options", body = Object),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: re-authenticate with one), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`: the public URL has no domain name", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_passkey_register_start(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<axum::Json<Value>> {
    require_factor_reauth(&app, &session, user.id).await?;
    let wa = webauthn(&app)?;
    let existing = app.mfa.store.passkeys(user.id).await?;
    let handle = match existing.first() {
        Some(p) => p.user_handle.clone(),
        None => {
            let mut h = vec![0u8; 16];
            crate::token::fill_random(&mut h);
            h
        }
    };
    let uuid = Uuid::from_slice(&handle).map_err(Error::internal)?;
    let exclude: Vec<_> = existing
        .iter()
        .filter_map(|p| serde_json::from_str::<Passkey>(&p.passkey).ok())
        .map(|p| p.cred_id().clone())
        .collect();
    let (ccr, state) = wa
        .start_passkey_registration(uuid, &user.username, &user.username, Some(exclude))
        .map_err(|e| webauthn_failed(format!("cannot start the registration: {e}")))?;
    // A discoverable credential, so the same passkey logs in without a username (webauthn-rs
    // asks for none; the verification does not depend on it).
    let mut options = to_value(&ccr)?;
    if let Some(sel) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(Value::as_object_mut)
    {
        sel.insert("residentKey".into(), json!("required"));
        sel.insert("requireResidentKey".into(), json!(true));
    }
    save_ceremony(&session, "register", to_value(&state)?, Some(handle)).await?;
    Ok(axum::Json(options))
}

/// `{"credential", "name"?}`: what `navigator.credentials.create` returned (binary fields
/// base64url).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasskeyRegistrationBody {
    #[schema(value_type = Object)]
    credential: RegisterPublicKeyCredential,
    /// A label for the passkey list.
    #[serde(default)]
    name: Option<String>,
}

/// `{"id", "name"}`: the stored passkey.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasskeyView {
    id: i64,
    name: String,
}

/// `{"id", "name", "recovery_codes"?}`: the registered passkey, and the account's first set of
/// recovery codes when it had none (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasskeyRegistered {
    id: i64,
    name: String,
    /// Ten single-use codes, present only when this registration issued them (the account had
    /// no recovery codes: a first second factor); store them offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

/// Finishes registering a passkey. The account's first second factor also brings ten recovery
/// codes, returned this once.
#[utoipa::path(
    post,
    path = "/auth/passkeys/register/finish",
    tag = "mfa",
    request_body = PasskeyRegistrationBody,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 201, description = "Registered; `recovery_codes` when the account had none", body = PasskeyRegistered),
        (status = 401, description = "`webauthn_failed` (no challenge, or the attestation did not verify), `not_authenticated`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: re-authenticate with one), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`", body = ErrorBody),
        (status = 409, description = "`mfa_already_enabled`: this credential is registered already", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_passkey_register_finish(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Json(body): Json<PasskeyRegistrationBody>,
) -> Result<Response> {
    require_factor_reauth(&app, &session, user.id).await?;
    let wa = webauthn(&app)?;
    let c = take_ceremony(&session, "register").await?;
    let state: PasskeyRegistration = from_value(c.state)?;
    let passkey = wa
        .finish_passkey_registration(&body.credential, &state)
        .map_err(|e| webauthn_failed(format!("the registration did not verify: {e}")))?;
    if let Some(n) = &body.name {
        refuse_control_chars("name", n)?;
    }
    let name: String = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("passkey")
        .chars()
        .take(100)
        .collect();
    let handle = c.user_handle.unwrap_or_default();
    let json = serde_json::to_string(&passkey).map_err(Error::internal)?;
    let cred_id: &[u8] = passkey.cred_id().as_ref();
    let notice = super::email::notice(
        &app,
        user.id,
        &crate::email::SecurityNotice::SecondFactor(true, "passkey"),
    )
    .await?;
    if !app
        .mfa
        .store
        .add_passkey(user.id, cred_id, &handle, &json, &name, &notice)
        .await?
    {
        return Err(Error::new(
            ErrorCode::MfaAlreadyEnabled,
            "this passkey is registered already",
        ));
    }
    let id = app
        .mfa
        .store
        .passkey_by_credential(cred_id)
        .await?
        .map_or(0, |p| p.id);
    audit!(
        "mfa.enable",
        user_id = user.id,
        method = "webauthn",
        "passkey registered"
    );
    super::email::notice_written(&app, &notice);
    // The registration proved possession of the new passkey.
    record_factor_proof(&session, user.id).await?;
    // A passkey-only account needs recovery codes like a TOTP one: issued with its first factor.
    let (codes, hashes) = new_codes();
    let recovery_codes = app
        .mfa
        .store
        .issue_recovery_codes_if_none(user.id, &hashes)
        .await?
        .then_some(codes);
    if recovery_codes.is_some() {
        audit!(
            "mfa.recovery_issue",
            user_id = user.id,
            "recovery codes issued with a first passkey"
        );
    }
    let body = PasskeyRegistered {
        id,
        name,
        recovery_codes,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `{"passkeys": [{"id", "name"}]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasskeyList {
    passkeys: Vec<PasskeyView>,
}

/// The signed-in user's passkeys.
#[utoipa::path(
    get,
    path = "/auth/passkeys",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The passkeys", body = PasskeyList),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required` (an access token)", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_passkeys(
    State(app): State<AppState>,
    user: AccountUser,
) -> Result<axum::Json<PasskeyList>> {
    let passkeys = app
        .mfa
        .store
        .passkeys(user.id)
        .await?
        .into_iter()
        .map(|p| PasskeyView {
            id: p.id,
            name: p.name,
        })
        .collect();
    Ok(axum::Json(PasskeyList { passkeys }))
}

/// Removes one of the signed-in user's passkeys (the last second factor takes the recovery codes
/// with it).
#[utoipa::path(
    delete,
    path = "/auth/passkeys/{id}",
    tag = "mfa",
    params(("id" = String, Path, description = "The passkey id from `GET /auth/passkeys`")),
    responses(
        StoreErrors,
        (status = 204, description = "Removed"),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: re-authenticate with one), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`mfa_not_enabled`: no passkey with this id belongs to the caller", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn delete_passkey(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    require_factor_reauth(&app, &session, user.id).await?;
    let not_found = || {
        Error::new(
            ErrorCode::MfaNotEnabled,
            "no passkey with this id belongs to you",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let notice = super::email::notice(
        &app,
        user.id,
        &crate::email::SecurityNotice::SecondFactor(false, "passkey"),
    )
    .await?;
    if !app.mfa.store.remove_passkey(user.id, id, &notice).await? {
        return Err(not_found());
    }
    super::email::notice_written(&app, &notice);
    audit!(
        "mfa.disable",
        user_id = user.id,
        method = "webauthn",
        passkey_id = id,
        "passkey removed"
    );
    audit_if_last_factor(&app, user.id, "webauthn").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a passkey as the second factor of a pending login: the `navigator.credentials.get`
/// options for the user's passkeys.
#[utoipa::path(
    post,
    path = "/auth/mfa/webauthn/start",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The request options", body = Object),
        (status = 401, description = "`mfa_not_pending`", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`, or `mfa_not_enabled` (no passkey)", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_mfa_webauthn_start(
    State(app): State<AppState>,
    session: Session,
) -> Result<axum::Json<Value>> {
    let p = pending_login(&session).await?;
    start_assertion(&app, &session, p.user_id(), "mfa").await
}

/// `{"credential"}`: what `navigator.credentials.get` returned (binary fields base64url).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasskeyAssertionBody {
    #[schema(value_type = Object)]
    credential: PublicKeyCredential,
    /// Passwordless login only: `"cookie"` (default) or `"bearer"`.
    #[serde(default)]
    transport: LoginTransport,
}

/// Completes a pending login with a passkey.
#[utoipa::path(
    post,
    path = "/auth/mfa/webauthn/finish",
    tag = "mfa",
    request_body = PasskeyAssertionBody,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 200, description = "Logged in, as `POST /auth/login` answers", body = AuthBody),
        (status = 401, description = "`webauthn_failed`, `mfa_not_pending`", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_mfa_webauthn_finish(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<PasskeyAssertionBody>,
) -> Result<Response> {
    let p = pending_login(&session).await?;
    check_rate(&app, p.user_id()).await?;
    let wa = webauthn(&app)?;
    let c = take_ceremony(&session, "mfa").await?;
    let state: PasskeyAuthentication = from_value(c.state)?;
    let res = match wa.finish_passkey_authentication(&body.credential, &state) {
        Ok(r) => r,
        Err(e) => {
            audit!("login.failure", reason = "webauthn_failed", user_id = p.user_id(), client_ip = %ip, error = %e);
            return Err(webauthn_failed("the passkey's answer did not verify"));
        }
    };
    let stored = app.mfa.store.passkeys(p.user_id()).await?;
    for s in stored {
        if let Ok(key) = serde_json::from_str::<Passkey>(&s.passkey)
            && key.cred_id() == res.cred_id()
        {
            touch(&app, s.id, key, &res).await?;
        }
    }
    complete(&app, &session, &p, ip, Proof::SecurityKey).await
}

/// Starts a passwordless login with a discoverable passkey: `{"publicKey": …, "csrf_token"}`
/// (the challenge lives in a new anonymous session; its CSRF token is needed by `finish`).
#[utoipa::path(
    post,
    path = "/auth/passkey/login/start",
    tag = "mfa",
    responses(
        StoreErrors,
        (status = 200, description = "The request options (no allowCredentials: the authenticator picks) and the CSRF token", body = Object),
        (status = 401, description = "`invalid_token`: a bad bearer token", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`rate_limits.login_per_ip`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security((), ("session_cookie" = [], "csrf_token" = [])),
)]
pub(crate) async fn post_passkey_login_start(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
) -> Result<axum::Json<Value>> {
    refuse_dead_bearer(&session).await?;
    // Each start creates a session record: counted as a login attempt from this address.
    app.limits.login_ip.take(&ip).await.map_err(|l| {
        app.limited(
            l,
            "login attempts from this address",
            "rate_limits.login_per_ip",
        )
    })?;
    let wa = webauthn(&app)?;
    let (mut rcr, state) = wa
        .start_discoverable_authentication()
        .map_err(|e| webauthn_failed(format!("cannot start the authentication: {e}")))?;
    // A modal request, not conditional UI (autofill): the page asked for a passkey.
    rcr.mediation = None;
    let c = Ceremony {
        kind: "login".into(),
        expires_at: now() + PENDING_SECS,
        state: to_value(&state)?,
        user_handle: None,
    };
    if session.user().await?.is_some() {
        // Signed in already (e.g. switching accounts): the ceremony rides in this session, which
        // stays valid until the finish logs in as the passkey's owner (and rotates it). Starting
        // a ceremony must not log anyone out.
        session.insert(CEREMONY_KEY, &c).await?;
    } else {
        session
            .restart_anonymous(CEREMONY_KEY, to_value(&c)?)
            .await?;
    }
    let mut out = to_value(&rcr)?;
    if let Some(o) = out.as_object_mut() {
        o.insert(
            "csrf_token".into(),
            json!(crate::csrf::session_token(&session).await?),
        );
    }
    Ok(axum::Json(out))
}

/// Finishes a passwordless login: logs in as the passkey's owner, like `POST /auth/login`.
#[utoipa::path(
    post,
    path = "/auth/passkey/login/finish",
    tag = "mfa",
    request_body = PasskeyAssertionBody,
    responses(
        StoreErrors,
        JsonBodyErrors,
        (status = 200, description = "Logged in, as `POST /auth/login` answers", body = AuthBody),
        (status = 401, description = "`webauthn_failed`: no challenge, unknown passkey, or the answer did not verify", body = ErrorBody),
        (status = 403, description = "`account_disabled`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
    ),
    security((), ("session_cookie" = [], "csrf_token" = [])),
)]
pub(crate) async fn post_passkey_login_finish(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    Json(body): Json<PasskeyAssertionBody>,
) -> Result<Response> {
    let wa = webauthn(&app)?;
    let c = take_ceremony(&session, "login").await?;
    let state: DiscoverableAuthentication = from_value(c.state)?;
    let (handle, cred_id) = wa
        .identify_discoverable_authentication(&body.credential)
        .map_err(|_| webauthn_failed("the passkey's answer names no user"))?;
    let stored = app
        .mfa
        .store
        .passkey_by_credential(cred_id)
        .await?
        .filter(|s| s.user_handle.as_slice() == handle.as_bytes().as_slice())
        .ok_or_else(|| webauthn_failed("this passkey is not registered here"))?;
    let key: Passkey = serde_json::from_str(&stored.passkey).map_err(Error::internal)?;
    let res = match wa.finish_discoverable_authentication_v2(&body.credential, state, &key) {
        Ok(r) => r,
        Err(e) => {
            app.login_failed("webauthn_failed");
            audit!("login.failure", reason = "webauthn_failed", user_id = stored.user_id, client_ip = %ip, error = %e);
            return Err(webauthn_failed("the passkey's answer did not verify"));
        }
    };
    touch(&app, stored.id, key, &res).await?;
    let user = app
        .users
        .by_id(stored.user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| Error::new(ErrorCode::AccountDisabled, "this account is disabled"))?;
    // A passkey is a second factor: a cookie session proves one now (see `Proof::Passkey`).
    let login = app.login.for_caller(ip, HeaderMap::new());
    let done = login
        .complete(&session, &user, body.transport, Proof::Passkey)
        .await?;
    Ok(done.into_response())
}

/// Starts a passkey re-authentication: the `navigator.credentials.get` options for the signed-in
/// user's passkeys; the answer goes to `POST /auth/reauth` as `credential`, with the password.
#[utoipa::path(
    post,
    path = "/auth/reauth/webauthn/start",
    tag = "auth",
    responses(
        StoreErrors,
        (status = 200, description = "The request options", body = Object),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required` (an access token), or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`passkeys_unavailable`, or `mfa_not_enabled` (no passkey)", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_reauth_webauthn_start(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
) -> Result<axum::Json<Value>> {
    start_assertion(&app, &session, user.id, "reauth").await
}
