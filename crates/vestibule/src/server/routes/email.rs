//! Email routes: password recovery (`POST /auth/password/forgot`, whose link feeds the one reset
//! path, `POST /auth/password/reset`) and address verification (`POST /auth/email/verify`,
//! `/auth/email/verify/resend`). The two that name an account answer the same body and status,
//! at the same speed, whether or not it exists: they spend the rate limits, hand the work to a
//! task and answer at once (the message goes through the outbox).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::email as account_email;
use crate::email::{Kind, SecurityNotice};
use crate::error::{Error, ErrorCode, Result};
use crate::server::json::Json;
use crate::server::openapi::{ErrorBody, JsonBodyErrors};
use crate::server::{AppState, ClientIp};

/// `{"login"}`: a username or an email address.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginName {
    /// The username or the address of the account.
    login: String,
}

/// The one answer of the routes that must not tell whether an account exists.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// Always `true`.
    accepted: bool,
    /// What happens next, for people.
    message: &'static str,
}

/// The budgets of a request that sends mail: per client address, then per name (counted
/// whether or not an account has it, so the 429 tells nothing either).
async fn take_budgets(app: &AppState, ip: std::net::IpAddr, login: &str) -> Result<String> {
    let key = login.trim().to_ascii_lowercase();
    if key.is_empty() || key.len() > 254 || key.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorCode::InvalidBody,
            "login must be a username or an email address",
        ));
    }
    app.limits.email_ip.take(&ip).await.map_err(|l| {
        app.limited(
            l,
            "emails asked for from this address",
            "rate_limits.email_per_ip",
        )
    })?;
    app.limits.email_address.take(&key).await.map_err(|l| {
        app.limited(
            l,
            "emails asked for this account",
            "rate_limits.email_per_address",
        )
    })?;
    Ok(key)
}

/// Asks for a password recovery link: when an active account has this username or address
/// and an address, a one-time link (30 minutes; a newer request or a password change voids it)
/// is sent there. The answer is the same whether or not the account exists.
#[utoipa::path(
    post,
    path = "/auth/password/forgot",
    tag = "auth",
    request_body = LoginName,
    responses(
        JsonBodyErrors,
        (status = 202, description = "Accepted (the same answer whether or not the account exists)", body = Accepted),
        (status = 403, description = "A CSRF refusal", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`rate_limits.email_per_ip`, `rate_limits.email_per_address`): wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(()),
)]
pub(crate) async fn post_password_forgot(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginName>,
) -> Result<(StatusCode, axum::Json<Accepted>)> {
    let key = take_budgets(&app, ip, &body.login).await?;
    let task_app = app.clone();
    after_answer("password recovery", async move {
        send_recovery(&task_app, &key, ip).await
    });
    Ok(accepted(
        "if an account has this username or address, a link to set a new password is on its way to its address",
    ))
}

/// Runs `work` (the account lookup and the outbox write) after the answer has gone out, so the
/// answer's timing is the same whether or not the account exists; a failure is logged, since
/// nobody is waiting for it.
fn after_answer(what: &'static str, work: impl Future<Output = Result<()>> + Send + 'static) {
    tokio::spawn(async move {
        // Let the answer go out first.
        tokio::task::yield_now().await;
        if let Err(e) = work.await {
            tracing::warn!(error = %e, "{what}: could not write the message");
        }
    });
}

fn accepted(message: &'static str) -> (StatusCode, axum::Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        axum::Json(Accepted {
            accepted: true,
            message,
        }),
    )
}

async fn send_recovery(app: &AppState, login: &str, ip: std::net::IpAddr) -> Result<()> {
    let Some(mailer) = &app.mailer else {
        return Ok(());
    };
    let user = app.users.by_login(login).await?;
    let Some((user, to)) = user
        .filter(|u| u.is_active)
        .and_then(|u| u.email.clone().map(|e| (u, e)))
    else {
        audit!("password.forgot", found = false, client_ip = %ip, "password recovery asked for no account with an address");
        return Ok(());
    };
    if !user.email_verified
        && !account_email::recovery_allowed(
            false,
            app.require_verified_email,
            account_email::pending_change(&app.db, user.id, Some(&to))
                .await?
                .is_some(),
        )
    {
        audit!("password.forgot", found = true, sent = false, user_id = user.id, client_ip = %ip, "password recovery refused: the account's address is not verified (auth.require_verified_email, or a change of address is pending)");
        return Ok(());
    }
    let minutes = (account_email::RECOVERY_LIFETIME.as_secs() / 60).to_string();
    account_email::issue_recovery(&app.db, user.id, |token| {
        let link = mailer.link("/reset", token.expose());
        mailer.render(
            Kind::PasswordReset,
            &to,
            &[
                ("link", &link),
                ("minutes", &minutes),
                ("username", &user.username),
            ],
        )
    })
    .await?;
    mailer.wake();
    audit!("password.forgot", found = true, user_id = user.id, client_ip = %ip, "password recovery link written to the outbox");
    Ok(())
}

/// Writes a verification message for `user_id`'s `email` (a new token; older ones die).
pub(crate) async fn send_verification(
    app: &AppState,
    user_id: i64,
    username: &str,
    email: &str,
) -> Result<()> {
    let Some(mailer) = &app.mailer else {
        return Ok(());
    };
    let hours = (account_email::VERIFICATION_LIFETIME.as_secs() / 3600).to_string();
    account_email::issue_verification(&app.db, user_id, email, |token| {
        Some(verification_message(mailer, token, email, username, &hours))
    })
    .await?;
    mailer.wake();
    Ok(())
}

/// The verification message carrying `token`.
pub(crate) fn verification_message(
    mailer: &crate::email::Mailer,
    token: &crate::token::SecretToken,
    email: &str,
    username: &str,
    hours: &str,
) -> crate::email::Outgoing {
    let link = mailer.link("/verify", token.expose());
    mailer.render(
        Kind::VerifyEmail,
        email,
        &[
            ("link", &link),
            ("token", token.expose()),
            ("hours", hours),
            ("username", username),
        ],
    )
}

/// `{"token"}`: the token of a verification link (or the code typed from the message).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct VerifyBody {
    /// The `vevf_…` token.
    #[schema(value_type = String, format = Password)]
    token: crate::auth::Password,
}

/// `{"verified": true, "email"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Verified {
    /// Always `true`.
    verified: bool,
    /// The address now verified on the account.
    email: String,
}

/// Verifies an address with the token sent to it (single use, 24 hours). Needs no session:
/// the link may be opened in another browser.
#[utoipa::path(
    post,
    path = "/auth/email/verify",
    tag = "auth",
    request_body = VerifyBody,
    responses(
        JsonBodyErrors,
        (status = 200, description = "Verified", body = Verified),
        (status = 400, description = "`verification_token_invalid` (malformed, unknown, expired or used) or `malformed_json`", body = ErrorBody),
        (status = 403, description = "A CSRF refusal", body = ErrorBody),
        (status = 409, description = "`email_taken`: another account verified this address meanwhile", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 503, description = "`store_unavailable`; retry", body = ErrorBody),
    ),
    security(()),
)]
pub(crate) async fn post_email_verify(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<VerifyBody>,
) -> Result<axum::Json<Verified>> {
    let invalid = || {
        Error::new(
            ErrorCode::VerificationTokenInvalid,
            "this verification link is unknown, expired or already used",
        )
        .with_hint("ask for a new one: POST /auth/email/verify/resend {\"login\"}")
    };
    let token = crate::token::SecretToken::parse(
        crate::token::TokenKind::EmailVerification,
        body.token.expose().trim(),
    )
    .map_err(|_| invalid())?;
    let mut written = crate::email::Notice::none();
    let Some(done) = account_email::verify(&app.db, &token, |done| {
        written = match (&app.mailer, &done.previous) {
            (Some(m), Some(old)) => m.notice(
                &SecurityNotice::EmailChanged {
                    old: old.clone(),
                    new: done.email.clone(),
                },
                &done.username,
                None,
            ),
            _ => crate::email::Notice::none(),
        };
        written.clone()
    })
    .await?
    else {
        return Err(invalid());
    };
    notice_written(&app, &written);
    audit!("email.verified", user_id = done.user_id, client_ip = %ip, changed = done.previous.is_some(), "email address verified");
    Ok(axum::Json(Verified {
        verified: true,
        email: done.email,
    }))
}

/// Sends a new verification link to the account's unverified address (older links die). The
/// answer is the same whether or not the account exists or needs one.
#[utoipa::path(
    post,
    path = "/auth/email/verify/resend",
    tag = "auth",
    request_body = LoginName,
    responses(
        JsonBodyErrors,
        (status = 202, description = "Accepted (the same answer whether or not the account exists)", body = Accepted),
        (status = 403, description = "A CSRF refusal", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(()),
)]
pub(crate) async fn post_email_resend(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(body): Json<LoginName>,
) -> Result<(StatusCode, axum::Json<Accepted>)> {
    let key = take_budgets(&app, ip, &body.login).await?;
    let task_app = app.clone();
    after_answer("verification resend", async move {
        if let Some(u) = task_app.users.by_login(&key).await?
            && u.is_active
            && !u.email_verified
            && let Some(email) = &u.email
        {
            send_verification(&task_app, u.id, &u.username, email).await?;
            audit!("email.verify_resend", user_id = u.id, client_ip = %ip, "verification link written to the outbox");
        }
        Ok(())
    });
    Ok(accepted(
        "if an account has this username or address and it is not verified yet, a new link is on its way",
    ))
}

/// The notice of `what` for `user`, rendered now and written by the change's own transaction
/// (the store function that makes the change takes it: [`crate::email::notice`]). Nothing when
/// email is off, `[email.notify]` turns this one off, or the account has no verified address.
pub(crate) fn notice_for(
    app: &AppState,
    user: &crate::auth::User,
    what: &SecurityNotice,
) -> crate::email::Notice {
    match &app.mailer {
        Some(m) => m.notice(
            what,
            &user.username,
            user.email.as_deref().filter(|_| user.email_verified),
        ),
        None => crate::email::Notice::none(),
    }
}

/// [`notice_for`] the account `user_id` (read now).
pub(crate) async fn notice(
    app: &AppState,
    user_id: i64,
    what: &SecurityNotice,
) -> Result<crate::email::Notice> {
    if app.mailer.is_none() {
        return Ok(crate::email::Notice::none());
    }
    Ok(match app.users.by_id(user_id).await? {
        Some(user) => notice_for(app, &user, what),
        None => crate::email::Notice::none(),
    })
}

/// After the change (and its notice) committed: wakes this instance's worker.
pub(crate) fn notice_written(app: &AppState, notice: &crate::email::Notice) {
    if notice.is_some()
        && let Some(m) = &app.mailer
    {
        m.wake();
    }
}

/// A sign-in from a new browser: no database change goes with it (the session lives in the
/// session store), so its notice is written on its own, before the login's answer leaves.
/// Best effort: a failure is logged, never the login's error.
pub(crate) async fn notify_new_device(app: &AppState, user_id: i64, ip: std::net::IpAddr) {
    let run = async {
        let n = notice(app, user_id, &SecurityNotice::NewDevice(ip)).await?;
        if let Some(m) = n.message() {
            crate::email::Outbox::new(app.db.clone())
                .enqueue(m)
                .await
                .map_err(crate::auth::UserError::from)?;
        }
        notice_written(app, &n);
        Ok::<(), Error>(())
    };
    if let Err(e) = run.await {
        tracing::warn!(error = %e, user_id, "new-device notice: could not write the message");
    }
}

/// `{"email"}`: the new address.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmailChange {
    /// The new address.
    email: String,
}

/// `{"pending_email"}`: where the verification link went.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmailChangePending {
    pending_email: String,
}

/// Changes the account's address: needs a recent password (`POST /auth/reauth`), and takes
/// effect only when the link sent to the new address is followed (`POST /auth/email/verify`),
/// at which point the old address gets a notice.
#[utoipa::path(
    post,
    path = "/auth/email",
    tag = "auth",
    request_body = EmailChange,
    responses(
        JsonBodyErrors,
        crate::server::openapi::StoreErrors,
        (status = 202, description = "A verification link went to the new address; the old one stays until it is followed", body = EmailChangePending),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required` (no password proved within `auth.reauth_window`), `session_required` (an access token), `insufficient_scope`, or a CSRF refusal", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_email` or `invalid_body`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: wait `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a retry can succeed"))),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_email_change(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    session: crate::session::Session,
    user: crate::auth::AccountUser,
    Json(body): Json<EmailChange>,
) -> Result<(StatusCode, axum::Json<EmailChangePending>)> {
    crate::auth::reauth::require_recent(&session, app.reauth_window).await?;
    let email = crate::email::EmailAddress::parse(&body.email)?;
    take_budgets(&app, ip, email.as_str()).await?;
    if let Some(owner) = app.users.by_email(email.as_str()).await?
        && owner.id != user.id
    {
        return Err(crate::auth::UserError::EmailTaken.into());
    }
    send_verification(&app, user.id, &user.username, email.as_str()).await?;
    audit!("email.change_requested", user_id = user.id, client_ip = %ip, "address change: verification link written to the outbox");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(EmailChangePending {
            pending_email: email.as_str().to_owned(),
        }),
    ))
}

/// `{"email", "verified", "pending_email"}`: the account's address and its state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmailStatus {
    /// The account's address (`null`: none).
    email: Option<String>,
    /// Whether it is verified.
    verified: bool,
    /// An address change waiting for its link to be followed (`null`: none).
    pending_email: Option<String>,
}

/// The signed-in account's address: whether it is verified (a page shows "verify your address"
/// with a resend button when not), and a change waiting for its link.
#[utoipa::path(
    get,
    path = "/auth/email",
    tag = "auth",
    responses(
        crate::server::openapi::StoreErrors,
        (status = 200, description = "The address and its state", body = EmailStatus),
        (status = 401, description = "`not_authenticated`, `session_expired` or `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required` (an access token)", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_email(
    State(app): State<AppState>,
    user: crate::auth::AccountUser,
) -> Result<axum::Json<EmailStatus>> {
    let stored = app
        .users
        .by_id(user.id)
        .await?
        .ok_or_else(Error::not_authenticated)?;
    let pending_email =
        account_email::pending_change(&app.db, stored.id, stored.email.as_deref()).await?;
    Ok(axum::Json(EmailStatus {
        verified: stored.email.is_some() && stored.email_verified,
        email: stored.email,
        pending_email,
    }))
}
