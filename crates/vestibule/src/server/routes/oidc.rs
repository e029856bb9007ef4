//! Sign-in through OpenID Connect providers (`auth::oidc`): the start and callback redirects,
//! the providers list for the sign-in buttons. The protocol is the library's; these handlers
//! read the request, log in through the library's login flow and redirect.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::oidc::{CallbackQuery, RelyingParty};
use crate::auth::{AccountUser, LoginStep, LoginTransport, Proof};
use crate::error::{Error, ErrorCode, Result};
use crate::server::openapi::{ErrorBody, StoreErrors};
use crate::server::{AppState, ClientIp};
use crate::session::Session;

pub(super) fn relying_party(app: &AppState) -> Result<&RelyingParty> {
    app.oidc.as_ref().ok_or_else(|| {
        Error::new(
            ErrorCode::OidcProviderUnknown,
            "no OpenID provider is configured",
        )
        .with_hint("add [[oidc.provider]] to the configuration")
    })
}

/// 303 to `location`.
fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => Error::new(ErrorCode::Internal, "unusable redirect location").into_response(),
    }
}

/// `url` with `key=value` added to its query.
fn with_param(url: &str, key: &str, value: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair(key, value);
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

fn code_name(e: &Error) -> String {
    serde_json::to_value(e.code())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "internal".into())
}

/// `{"return_to"?}` of the start route.
fn query_param(raw: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Starts a login through an OpenID provider: redirects the browser to the provider's
/// authorization endpoint (authorization code flow, PKCE, state and nonce kept in the session).
#[utoipa::path(
    get,
    path = "/auth/oidc/{provider}/start",
    tag = "oidc",
    params(
        ("provider" = String, Path, description = "The provider's configured name"),
        ("return_to" = Option<String>, Query, description = "Where the browser goes after the login: a URL on this server's origin or an allowed SPA origin, or a path; default: `/`"),
    ),
    responses(
        StoreErrors,
        (status = 303, description = "To the provider's authorization endpoint"),
        (status = 400, description = "`oidc_return_to_refused`: `return_to` is on a foreign origin", body = ErrorBody),
        (status = 404, description = "`oidc_provider_unknown`", body = ErrorBody),
    ),
    security(()),
)]
pub(crate) async fn get_start(
    State(app): State<AppState>,
    session: Session,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let rp = relying_party(&app)?;
    let return_to = query_param(query.as_deref(), "return_to");
    let url = rp.start(&session, &provider, return_to.as_deref()).await?;
    Ok(see_other(&url))
}

/// The provider's redirect back: verifies the response, logs the user in (the library's login
/// flow: rotation, audit, device cookie, second factor) and redirects to `return_to`; a refusal
/// redirects there too with `oidc_error=<code>` (or answers JSON when no login was started).
#[utoipa::path(
    get,
    path = "/auth/oidc/{provider}/callback",
    tag = "oidc",
    params(
        ("provider" = String, Path, description = "The provider's configured name"),
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("state" = Option<String>, Query, description = "The state sent at start"),
        ("iss" = Option<String>, Query, description = "RFC 9207: the issuer that answered"),
        ("error" = Option<String>, Query, description = "The provider's error instead of a code"),
    ),
    responses(
        StoreErrors,
        (status = 303, description = "To `return_to`: logged in, or `?mfa_required=1` (a second factor is due: `/auth/mfa/*`), or `?oidc_error=<code>`: `oidc_state_mismatch`, `oidc_issuer_mismatch`, `oidc_provider_error`, `oidc_code_rejected`, `oidc_id_token_invalid`, `oidc_nonce_mismatch`, `oidc_id_token_expired`, `oidc_provider_unavailable`, `oidc_client_rejected` (the provider refused this server's client authentication: its configuration), `signup_disabled`, `account_disabled`, `username_taken`"),
        (status = 400, description = "`oidc_state_mismatch`: no login through a provider was started in this session", body = ErrorBody),
        (status = 404, description = "`oidc_provider_unknown`", body = ErrorBody),
    ),
    security(()),
)]
pub(crate) async fn get_callback(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    session: Session,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let rp = relying_party(&app)?;
    let raw = query.as_deref();
    let q = CallbackQuery {
        code: query_param(raw, "code"),
        state: query_param(raw, "state"),
        iss: query_param(raw, "iss"),
        error: query_param(raw, "error"),
    };
    let verified = match rp.callback(&session, &provider, &q).await {
        Ok(v) => v,
        Err(e) => {
            return match e.return_to {
                Some(to) => Ok(see_other(&with_param(
                    &to,
                    "oidc_error",
                    &code_name(&e.error),
                ))),
                None => Err(e.error),
            };
        }
    };
    let back = |e: Error| {
        Ok(see_other(&with_param(
            &verified.return_to,
            "oidc_error",
            &code_name(&e),
        )))
    };
    if let Some(uid) = verified.link_user {
        return finish_link(rp, &session, &verified, uid).await;
    }
    let user = match rp.resolve_user(&verified).await {
        Ok(u) => u,
        Err(e) => return back(e),
    };
    let login = app.login.for_caller(ip, headers);
    let step = if verified.trusted_mfa {
        login
            .complete(&session, &user, LoginTransport::Cookie, Proof::OidcMfa)
            .await
            .map(LoginStep::LoggedIn)
    } else {
        login
            .verified_by(&session, &user, LoginTransport::Cookie, Proof::Oidc)
            .await
    };
    let step = match step {
        Ok(s) => s,
        Err(e) => return back(e),
    };
    // The provider's tokens stay on the server, sealed under `secret_key` when one is set.
    rp.keep_tokens(&session, user.id, &verified.tokens).await?;
    // The ID token (RP-initiated logout) and the provider's `sid` (back-channel logout).
    rp.keep_login(
        &session,
        user.id,
        &verified,
        app.sessions.config().absolute_timeout,
    )
    .await?;
    Ok(match step {
        LoginStep::LoggedIn(mut done) => {
            let mut res = see_other(&verified.return_to);
            if let Some(c) = done.take_device_cookie() {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        LoginStep::SecondFactorDue(_) => {
            see_other(&with_param(&verified.return_to, "mfa_required", "1"))
        }
    })
}

/// One configured provider, for the sign-in buttons.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderBody {
    /// The name in `/auth/oidc/{name}/start`.
    name: String,
    /// The button's label.
    label: String,
}

/// The configured OpenID providers (empty when none).
#[utoipa::path(
    get,
    path = "/auth/oidc/providers",
    tag = "oidc",
    responses((status = 200, description = "The providers", body = [ProviderBody])),
    security(()),
)]
pub(crate) async fn get_providers(State(app): State<AppState>) -> axum::Json<Vec<ProviderBody>> {
    axum::Json(
        app.oidc
            .as_ref()
            .map(|rp| {
                rp.providers()
                    .iter()
                    .map(|p| ProviderBody {
                        name: p.name.clone(),
                        label: p.label.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// `{"identities"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IdentityList {
    identities: Vec<crate::auth::oidc::Identity>,
}

/// The signed-in user's linked provider identities.
#[utoipa::path(
    get,
    path = "/auth/identities",
    tag = "oidc",
    responses(
        StoreErrors,
        (status = 200, description = "The identities", body = IdentityList),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`session_required`", body = ErrorBody),
    ),
    security(("session_cookie" = []), ("bearer" = [])),
)]
pub(crate) async fn get_identities(
    State(app): State<AppState>,
    user: AccountUser,
) -> Result<axum::Json<IdentityList>> {
    let identities = match &app.oidc {
        Some(rp) => rp.identities().list(user.id).await?,
        None => Vec::new(),
    };
    Ok(axum::Json(IdentityList { identities }))
}

/// Unlinks one of the signed-in user's identities (re-authentication required; never the last
/// way in: an account without a password keeps its last identity).
#[utoipa::path(
    delete,
    path = "/auth/identities/{id}",
    tag = "oidc",
    params(("id" = String, Path, description = "The identity id from `GET /auth/identities`")),
    responses(
        StoreErrors,
        (status = 204, description = "Unlinked"),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required` (the account has a second factor: prove it too), `session_required`, or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`not_found`: no identity with this id belongs to the caller", body = ErrorBody),
        (status = 409, description = "`oidc_last_login`: the account has no password and no other identity", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn delete_identity(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    // The same gate as linking and as second factors: a recent password, and a recent second
    // factor on an account that has one.
    super::mfa::require_factor_reauth(&app, &session, user.id).await?;
    let not_found = || {
        Error::new(
            ErrorCode::NotFound,
            "no identity with this id belongs to you",
        )
    };
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let rp = app.oidc.as_ref().ok_or_else(not_found)?;
    let linked = rp.identities().list(user.id).await?;
    if !linked.iter().any(|i| i.id == id) {
        return Err(not_found());
    }
    let has_password = app
        .users
        .by_id(user.id)
        .await?
        .is_some_and(|u| u.password_hash != crate::auth::oidc::NO_PASSWORD);
    if !has_password && linked.len() <= 1 {
        return Err(Error::new(
            ErrorCode::OidcLastLogin,
            "this identity is the account's only way to log in",
        )
        .with_hint("set a password or link another identity first"));
    }
    if !rp.identities().unlink(user.id, id).await? {
        return Err(not_found());
    }
    audit!(
        "oidc.unlink",
        user_id = user.id,
        identity_id = id,
        "identity unlinked"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `{"return_to"?}` of `POST /auth/oidc/{provider}/link`.
#[derive(Debug, Default, serde::Deserialize, ToSchema)]
pub(crate) struct LinkRequest {
    /// Where the browser goes after the provider: a URL on this server's origin or an allowed SPA
    /// origin, or a path; default: `/`.
    #[serde(default)]
    return_to: Option<String>,
}

/// `{"url"}`: where to send the browser.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LinkStarted {
    /// The provider's authorization URL.
    url: String,
}

/// Starts linking a provider identity to the signed-in user (re-authentication required, as for
/// second factors): the answer is the provider's authorization URL to send the browser to; the
/// callback links the identity to this user (nobody else logs in) and redirects to `return_to`,
/// with `oidc_error=oidc_identity_taken` when the identity belongs to another account.
#[utoipa::path(
    post,
    path = "/auth/oidc/{provider}/link",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name")),
    request_body = LinkRequest,
    responses(
        StoreErrors,
        (status = 200, description = "The provider's authorization URL", body = LinkStarted),
        (status = 400, description = "`oidc_return_to_refused`, `malformed_json`", body = ErrorBody),
        (status = 401, description = "`not_authenticated`, `session_expired`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`reauth_required`, `mfa_reauth_required`, `session_required` (an access token or a bearer session: the provider comes back to the browser's cookie session), or a CSRF refusal", body = ErrorBody),
        (status = 404, description = "`oidc_provider_unknown`", body = ErrorBody),
    ),
    security(("session_cookie" = [], "csrf_token" = [])),
)]
pub(crate) async fn post_link(
    State(app): State<AppState>,
    session: Session,
    user: AccountUser,
    Path(provider): Path<String>,
    crate::server::json::Json(body): crate::server::json::Json<LinkRequest>,
) -> Result<axum::Json<LinkStarted>> {
    let rp = relying_party(&app)?;
    if session.transport() != crate::session::Transport::Cookie {
        return Err(Error::new(
            ErrorCode::SessionRequired,
            "linking an identity needs the browser's cookie session: the provider redirects back to the browser",
        )
        .with_hint("call this from the browser that is logged in"));
    }
    super::mfa::require_factor_reauth(&app, &session, user.id).await?;
    let url = rp
        .start_link(&session, &provider, body.return_to.as_deref(), user.id)
        .await?;
    Ok(axum::Json(LinkStarted { url }))
}

/// The callback of a link flow: the session must still be the user's who started it; the
/// identity is linked to that user, nobody logs in; refusals go to `return_to` as
/// `oidc_error=<code>`.
async fn finish_link(
    rp: &RelyingParty,
    session: &Session,
    verified: &crate::auth::oidc::Verified,
    user_id: i64,
) -> Result<Response> {
    let back = |e: &Error| {
        see_other(&with_param(
            &verified.return_to,
            "oidc_error",
            &code_name(e),
        ))
    };
    let current = session.user().await?.map(|u| u.id);
    if current != Some(user_id) {
        return Ok(back(&Error::new(
            ErrorCode::OidcStateMismatch,
            "the link was started by another login than this session's",
        )));
    }
    match rp.link(verified, user_id).await {
        Ok(()) => Ok(see_other(&with_param(
            &verified.return_to,
            "oidc_linked",
            &verified.provider,
        ))),
        Err(e) => Ok(back(&e)),
    }
}
