//! Logging out with an OpenID provider (`auth::oidc::logout`): the provider's back-channel
//! logout call, and the SPA's logout that also ends the provider's session (RP-initiated).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::logged_out;
use crate::auth::MaybeAuthUser;
use crate::error::{Error, ErrorCode, Result};
use crate::server::AppState;
use crate::server::openapi::{ErrorBody, StoreErrors};
use crate::session::Session;

/// `Cache-Control: no-store` on every answer (Back-Channel Logout 1.0, §2.8).
fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The provider's back-channel logout: a form-encoded `logout_token` (a JWT the provider signs)
/// naming the provider session (`sid`) or the user (`sub`) that logged out. The sessions made
/// from it end on every instance (the store's revocation); the token is verified as the
/// specification says (signature with the provider's keys, never `alg: none`, `iss`, `aud`,
/// `iat`, the logout event, no `nonce`) and refused when its `jti` was seen before.
#[utoipa::path(
    post,
    path = "/auth/oidc/{provider}/backchannel-logout",
    tag = "oidc",
    params(("provider" = String, Path, description = "The provider's configured name")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`logout_token=<JWT>`"),
    responses(
        StoreErrors,
        (status = 200, description = "The sessions named by the token have ended (none may have been live); a 503 may also be `oidc_provider_unavailable` (the provider's keys could not be fetched)"),
        (status = 400, description = "`oidc_logout_token_invalid`: missing, unsigned, badly signed, another issuer's or audience's, too old, no logout event, a `nonce`, neither `sid` nor `sub`, or a replayed `jti`", body = ErrorBody),
        (status = 404, description = "`oidc_provider_unknown`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not a form", body = ErrorBody),
    ),
    security(()),
)]
pub(crate) async fn post_backchannel_logout(
    State(app): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    no_store(match backchannel(&app, &provider, &headers, &body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    })
}

async fn backchannel(
    app: &AppState,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<()> {
    let rp = super::oidc::relying_party(app)?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return Err(Error::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be application/x-www-form-urlencoded",
        )
        .with_hint("send logout_token=<JWT> as a form"));
    }
    let token = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::OidcLogoutTokenInvalid,
                "the body has no logout_token",
            )
            .with_hint("send logout_token=<JWT> as a form")
        })?;
    rp.back_channel_logout(&app.sessions, provider, &token)
        .await
        .map(|_| ())
}

/// `{"return_to"?}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcLogoutBody {
    /// Where the provider sends the browser after its logout (`post_logout_redirect_uri`): a
    /// URL on this server's origin or an allowed SPA origin, or a path; it must also be
    /// registered at the provider. Default: the provider's own page.
    #[serde(default)]
    return_to: Option<String>,
}

/// `{"end_session_url"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OidcLoggedOut {
    /// The provider's logout URL to navigate to (`id_token_hint`, `client_id`,
    /// `post_logout_redirect_uri`): `null` when the session did not log in through a provider,
    /// the provider has no `end_session_endpoint`, or it did not answer.
    #[schema(required = true)]
    end_session_url: Option<String>,
}

/// Ends the current session, as `POST /auth/logout`, and answers the provider's logout URL
/// (RP-Initiated Logout 1.0) when the session logged in through a provider: the SPA navigates
/// there to end the provider's session too. The ID token for `id_token_hint` never left the
/// server before; it is good only for this logout.
#[utoipa::path(
    post,
    path = "/auth/oidc/logout",
    tag = "oidc",
    request_body(content = OidcLogoutBody, content_type = "application/json", description = "Optional: an empty body is `{}`"),
    responses(
        StoreErrors,
        (status = 200, description = "Logged out; `Clear-Site-Data: \"cookies\"` for a cookie session unless `session.clear_site_data = false`", body = OidcLoggedOut),
        (status = 400, description = "`oidc_return_to_refused`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: not JSON, or a field other than `return_to`", body = ErrorBody),
        (status = 401, description = "`invalid_token`: a bad bearer token", body = ErrorBody),
        (status = 403, description = "`csrf_origin_untrusted`, `csrf_token_missing`, `csrf_token_mismatch`", body = ErrorBody),
    ),
    security((), ("session_cookie" = [], "csrf_token" = []), ("bearer" = [])),
)]
pub(crate) async fn post_oidc_logout(
    State(app): State<AppState>,
    session: Session,
    user: MaybeAuthUser,
    body: Bytes,
) -> Result<Response> {
    let body: OidcLogoutBody = if body.iter().all(u8::is_ascii_whitespace) {
        OidcLogoutBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorCode::InvalidBody,
                format!("the body is not {{\"return_to\"?}}: {e}"),
            )
        })?
    };
    let mut end_session_url = None;
    if let (Some(rp), Some(user)) = (&app.oidc, &user.0) {
        // A refused return_to is the caller's mistake: answered before anything ends.
        if let Some(to) = &body.return_to {
            rp.check_return_to(Some(to))?;
        }
        end_session_url = match rp
            .end_session_url(&session, user.id, body.return_to.as_deref())
            .await
        {
            Ok(u) => u,
            Err(e) if e.code() == ErrorCode::StoreUnavailable => return Err(e),
            Err(e) => {
                // The provider is down: the Vestibule session still ends.
                tracing::warn!(error = %e, "no provider logout URL");
                None
            }
        };
    }
    session.flush().await?;
    audit!(
        "logout",
        user_id = user.0.as_ref().map(|u| u.id),
        provider_logout = end_session_url.is_some()
    );
    let done = logged_out(&app, &session);
    let mut res = axum::Json(OidcLoggedOut { end_session_url }).into_response();
    res.headers_mut().extend(done.headers().clone());
    Ok(no_store(res))
}
