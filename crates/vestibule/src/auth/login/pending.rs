//! The pending second-factor login. When a user with a second factor gives the right password,
//! nobody is logged in: `{user, expiry}` goes under [`PENDING_KEY`] in a session that has no user
//! (a fresh cookie session, or a new bearer token whose record expires with the pending state),
//! so every extractor, route and proxied upstream that needs a user still answers 401. Only the
//! second-factor routes read it ([`Login::pending`](super::Login::pending)).

use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::answer::{MfaRequiredBody, SecondFactorDue, rfc3339};
use crate::auth::User;
use crate::auth::mfa::MfaMethods;
use crate::error::{Error, ErrorCode, Result};
use crate::session::{Session, UnixTime, now};

/// Session key of the pending login (a correct password waiting for its second factor).
pub(crate) const PENDING_KEY: &str = "_mfa_pending";
/// How long a pending login (and a WebAuthn challenge) lives.
pub(crate) const PENDING_SECS: i64 = 300;

/// A login waiting for its second factor: the user whose password was right.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub(super) user_id: i64,
    pub(super) username: String,
    pub(super) expires_at: UnixTime,
    /// Whether the login asked for the bearer transport.
    pub(super) bearer: bool,
}

impl PendingLogin {
    /// The user whose second factor is due.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Their username.
    pub fn username(&self) -> &str {
        &self.username
    }
}

/// Records the pending state after a correct password.
pub(super) async fn begin(
    session: &Session,
    user: &User,
    methods: &MfaMethods,
    bearer: bool,
) -> Result<SecondFactorDue> {
    let pending = PendingLogin {
        user_id: user.id,
        username: user.username.clone(),
        expires_at: now() + PENDING_SECS,
        bearer,
    };
    let value = serde_json::to_value(&pending).map_err(Error::internal)?;
    let mut body = MfaRequiredBody {
        mfa_required: true,
        methods: methods.names().into_iter().map(str::to_owned).collect(),
        expires_at: rfc3339(pending.expires_at),
        csrf_token: None,
        token: None,
    };
    if bearer {
        let mut data = Map::new();
        data.insert(PENDING_KEY.to_owned(), value);
        // The record dies with the pending state: a pending token is good for nothing after it.
        let (token, _) = session.create_bearer(data, pending.expires_at).await?;
        body.token = Some(token.expose().to_owned());
    } else {
        // A new session id now, and again when the factor is given.
        session.restart_anonymous(PENDING_KEY, value).await?;
        body.csrf_token = crate::csrf::session_token(session).await?;
    }
    Ok(SecondFactorDue { body })
}

fn not_pending(why: &str) -> Error {
    Error::new(ErrorCode::MfaNotPending, why.to_owned()).with_hint(
        "POST /auth/login with the password first; the second factor is due within 5 minutes",
    )
}

/// The live pending login of this session (401 `mfa_not_pending` without one).
pub(crate) async fn pending(session: &Session) -> Result<PendingLogin> {
    match session.get::<PendingLogin>(PENDING_KEY).await? {
        Some(p) if p.expires_at > now() => Ok(p),
        Some(_) => {
            session.remove(PENDING_KEY).await?;
            Err(not_pending("the pending login expired"))
        }
        None => Err(not_pending("no login is waiting for a second factor")),
    }
}
