//! What a password change ended, in its answer: a user who changes a password should be told
//! that their other devices were signed out and their scripts' access tokens stopped working,
//! not find out from an empty list later.

use serde::Serialize;
use utoipa::ToSchema;

use super::routes::AuthBody;
use crate::session::Ended;

/// `{"sessions", "access_tokens"}`: how many credentials other than the caller's own ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EndedCounts {
    /// Other sessions ended; `null` with the cookie session store, which keeps no list (every
    /// other session was ended all the same, by bumping the account's session generation).
    #[schema(required = true)]
    sessions: Option<u64>,
    /// Access tokens revoked (0 when `tokens.revoke_on_password_change` is off).
    access_tokens: u64,
}

impl EndedCounts {
    /// The counts from what the session store and the token store reported.
    pub(crate) fn new(sessions: Ended, access_tokens: u64) -> Self {
        Self {
            sessions: match sessions {
                Ended::Deleted(n) => Some(n),
                Ended::Generation => None,
            },
            access_tokens,
        }
    }
}

/// What `POST /auth/password` answers: the login answer of the rotated session (the new CSRF
/// token, or the new bearer token) and what else ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasswordChanged {
    #[serde(flatten)]
    pub(crate) auth: AuthBody,
    /// The caller's other sessions and access tokens that the change ended.
    pub(crate) ended: EndedCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_bump_has_no_count() {
        let json = |e| serde_json::to_value(EndedCounts::new(e, 1)).expect("json");
        assert_eq!(
            json(Ended::Deleted(2)),
            serde_json::json!({"sessions": 2, "access_tokens": 1})
        );
        assert_eq!(
            json(Ended::Generation),
            serde_json::json!({"sessions": null, "access_tokens": 1})
        );
    }
}
