//! `AuthUser` and `MaybeAuthUser`: the analogue of `request.user` for any axum handler.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;

use crate::error::{Error, ErrorCode};
use crate::session::{Session, SessionUser, Transport};

/// The logged-in user. Handlers that take it answer 401 `not_authenticated` (with
/// `WWW-Authenticate`) to anonymous callers — a 401, not DRF's 403.
///
/// ```
/// use vestibule::auth::AuthUser;
///
/// async fn whoami(user: AuthUser) -> String {
///     format!("hello {}", user.username)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// User id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// When this session proved the password (Unix seconds).
    pub auth_time: i64,
}

impl From<SessionUser> for AuthUser {
    fn from(u: SessionUser) -> Self {
        Self {
            id: u.id,
            username: u.username,
            auth_time: u.auth_time,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        session
            .user()
            .await?
            .map(AuthUser::from)
            .ok_or_else(|| session.no_user_error())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        Ok(session.user().await?.map(AuthUser::from))
    }
}

/// The user if logged in, else `None`; never rejects for anonymity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        Ok(MaybeAuthUser(session.user().await?.map(AuthUser::from)))
    }
}

/// The logged-in user of a *session* (the cookie, or a session bearer token from login), never a
/// personal access token: the extractor of every account-security route (sessions, access
/// tokens, password, re-authentication, second factors, passkeys). One rule in one place, so a
/// leaked script token — whatever its scopes — can neither read nor change how the account is
/// protected, and a new route cannot forget the check.
///
/// Answers 401 like [`AuthUser`] without a user, and 403 `session_required` for an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUser(pub AuthUser);

impl std::ops::Deref for AccountUser {
    type Target = AuthUser;

    fn deref(&self) -> &AuthUser {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AccountUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <AuthUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let session = Session::from_request_parts(parts, state).await?;
        if session.transport() == Transport::AccessToken {
            return Err(Error::new(
                ErrorCode::SessionRequired,
                "access tokens cannot read or manage the account's security",
            )
            .with_hint(
                "call this with a session: the cookie, or a bearer token from POST /auth/login",
            ));
        }
        Ok(AccountUser(user))
    }
}
