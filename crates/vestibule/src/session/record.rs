//! What a store holds for one session, and the change one request makes to it.

use serde_json::{Map, Value};

use crate::token::TokenHash;

/// Seconds since the Unix epoch. Stores keep whole seconds; sub-second precision buys nothing here.
pub type UnixTime = i64;

/// The current time as [`UnixTime`].
pub fn now() -> UnixTime {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// One session as stored: keyed by the hash of its token, never by the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Hash of the session token; the store key.
    pub key: TokenHash,
    /// The logged-in user, if any; stores index it for listing and revoking a user's sessions.
    pub user_id: Option<i64>,
    /// The handler-visible data (`request.session`).
    pub data: Map<String, Value>,
    /// When the session was created.
    pub created_at: UnixTime,
    /// Last time the expiry was extended (throttled, so it lags the real last request by at most
    /// the touch interval).
    pub last_seen: UnixTime,
    /// Idle expiry: the record is dead from this instant on.
    pub expires_at: UnixTime,
    /// Absolute cap: the idle expiry never slides past it.
    pub absolute_expires_at: UnixTime,
    /// The `User-Agent` that created the session, for the session list.
    pub user_agent: Option<String>,
}

impl Record {
    /// Whether the record is dead at `now` (idle or absolute expiry passed).
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now >= self.expires_at || now >= self.absolute_expires_at
    }

    /// Applies a delta in place: the same merge every store performs.
    pub fn apply(&mut self, delta: &Delta) {
        for (k, v) in &delta.set {
            self.data.insert(k.clone(), v.clone());
        }
        for k in &delta.remove {
            self.data.remove(k);
        }
        self.last_seen = delta.last_seen;
        self.expires_at = delta.expires_at.min(self.absolute_expires_at);
    }
}

/// The keys one request changed, plus the new expiry. Stores merge it into the stored record
/// atomically, so concurrent requests that write different keys never lose each other's writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Keys written, with their new values.
    pub set: Map<String, Value>,
    /// Keys removed.
    pub remove: Vec<String>,
    /// New `last_seen`.
    pub last_seen: UnixTime,
    /// New idle expiry (stores cap it at the absolute expiry).
    pub expires_at: UnixTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{SecretToken, TokenKind};

    #[test]
    fn apply_merges_keys_and_caps_the_expiry() {
        let mut r = Record {
            key: SecretToken::generate(TokenKind::Session).hash(),
            user_id: None,
            data: Map::from_iter([("a".into(), Value::from(1)), ("b".into(), Value::from(2))]),
            created_at: 0,
            last_seen: 0,
            expires_at: 10,
            absolute_expires_at: 50,
            user_agent: None,
        };
        let d = Delta {
            set: Map::from_iter([("c".into(), Value::from(3))]),
            remove: vec!["a".into()],
            last_seen: 5,
            expires_at: 100,
        };
        r.apply(&d);
        assert_eq!(r.data.get("a"), None);
        assert_eq!(r.data.get("b"), Some(&Value::from(2)));
        assert_eq!(r.data.get("c"), Some(&Value::from(3)));
        assert_eq!(r.expires_at, 50);
        assert!(r.is_expired(50));
        assert!(!r.is_expired(49));
    }
}
