//! What a store holds for one session, and the change one request makes to it.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::token::TokenHash;

/// Seconds since the Unix epoch. Stores keep whole seconds; sub-second precision buys nothing here.
pub type UnixTime = i64;

/// The current time as [`UnixTime`].
pub fn now() -> UnixTime {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Reserved data key holding the logged-in user (like Django's `_auth_user_id`).
pub const AUTH_USER_KEY: &str = "_auth_user";

/// The user a session is logged in as, cached in the session so `/auth/me` needs no user lookup.
/// Disabling a user or changing a password deletes the user's sessions, so this never goes stale.
///
/// A record holds it typed ([`Record::user`]), not as JSON among the data: a JSON object costs
/// a B-tree node of its own (≈ 1.3 kB per cached session, bench/session_bytes.sh) and a
/// deserialization on every request that asks who is logged in. Stores keep it under
/// [`AUTH_USER_KEY`] with the data, as before (records written by earlier versions load as
/// they were).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// User id.
    pub id: i64,
    /// Username at login time.
    pub username: String,
    /// When the session proved the password (Unix seconds).
    pub auth_time: UnixTime,
    /// How the session's token travels.
    #[serde(default)]
    pub transport: Transport,
}

impl SessionUser {
    /// The user as JSON, as its `Serialize` writes it, built by hand so that it cannot fail
    /// (a unit test holds the two equal).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id));
        m.insert("username".into(), Value::from(self.username.clone()));
        m.insert("auth_time".into(), Value::from(self.auth_time));
        m.insert("transport".into(), Value::from(self.transport.as_str()));
        Value::Object(m)
    }
}

/// How a request's credential travels, which decides CSRF, cookies and what a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The session cookie (an ambient credential: CSRF checks apply).
    #[default]
    Cookie,
    /// A session token in `Authorization: Bearer` (no cookie, no CSRF).
    Bearer,
    /// A personal access token in `Authorization: Bearer`: a user, scopes, and no session data.
    AccessToken,
}

impl Transport {
    /// The name as JSON writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Cookie => "cookie",
            Transport::Bearer => "bearer",
            Transport::AccessToken => "access_token",
        }
    }
}

/// How many distinct `User-Agent` values [`shared_user_agent`] keeps one copy of.
pub const SHARED_USER_AGENTS: usize = 1024;

/// The one copy of `text` every record in this process shares.
///
/// Why: the User-Agent was a fifth of a cached session's memory (bench/session_bytes.sh, 1M
/// logged-in sessions in the read cache: 653 B each with a 111-byte value, 524 B without), and the
/// sessions of one deployment carry a few hundred distinct values between them. Every store's
/// decoder and the session layer take their value from here, so a session costs a pointer for it.
/// Bounded (see [`AgentSet`]), so a client sending random values cannot grow it.
pub fn shared_user_agent(text: &str) -> Arc<str> {
    static SEEN: LazyLock<RwLock<AgentSet>> =
        LazyLock::new(|| RwLock::new(AgentSet::new(SHARED_USER_AGENTS)));
    if let Ok(seen) = SEEN.read()
        && let Some(shared) = seen.0.get(text)
    {
        return Arc::clone(shared);
    }
    // A poisoned lock only means another thread panicked mid-insert: the set is still a set.
    SEEN.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert(text)
}

/// At most `bound` distinct values, one copy each.
///
/// When full, the values no record holds any more are dropped, and if every one is still held,
/// all of them: values change over a process's life (browsers update every few weeks), so a set
/// that stopped taking new values once full would end up sharing nothing. Records keep their own
/// `Arc`, so dropping a value from the set costs at most one more copy of it later.
#[derive(Debug)]
struct AgentSet(HashSet<Arc<str>>, usize);

impl AgentSet {
    fn new(bound: usize) -> Self {
        Self(HashSet::new(), bound)
    }

    fn get_or_insert(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        if self.0.len() >= self.1 {
            self.0.retain(|v| Arc::strong_count(v) > 1);
            if self.0.len() >= self.1 {
                self.0.clear();
            }
        }
        let fresh: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&fresh));
        fresh
    }
}

/// One session as stored: keyed by the hash of its token, never by the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Hash of the session token; the store key.
    pub key: TokenHash,
    /// The logged-in user, if any; stores index it for listing and revoking a user's sessions.
    pub user_id: Option<i64>,
    /// The logged-in user (stored as [`AUTH_USER_KEY`]; never also in `data`).
    pub user: Option<SessionUser>,
    /// The handler-visible data (`request.session`), without [`AUTH_USER_KEY`].
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
    /// The `User-Agent` that created the session, for the session list; one copy per distinct
    /// value in the process (see [`shared_user_agent`]).
    pub user_agent: Option<Arc<str>>,
}

impl Record {
    /// Whether the record is dead at `now` (idle or absolute expiry passed).
    pub fn is_expired(&self, now: UnixTime) -> bool {
        now >= self.expires_at || now >= self.absolute_expires_at
    }

    /// Moves a stored [`AUTH_USER_KEY`] out of `data` into [`user`](Self::user): what every
    /// store does to what it read (the data as stored holds the user among the keys). A value
    /// that is not a user is corrupt.
    ///
    /// # Errors
    /// The value under [`AUTH_USER_KEY`] does not deserialize.
    pub fn take_user_from_data(&mut self) -> Result<(), serde_json::Error> {
        if let Some(v) = self.data.remove(AUTH_USER_KEY) {
            self.user = Some(SessionUser::deserialize(&v)?);
        }
        Ok(())
    }

    /// The data as stores keep it: `data` plus the user under [`AUTH_USER_KEY`].
    pub fn stored_data(&self) -> std::borrow::Cow<'_, Map<String, Value>> {
        match &self.user {
            None => std::borrow::Cow::Borrowed(&self.data),
            Some(u) => {
                let mut data = self.data.clone();
                data.insert(AUTH_USER_KEY.to_owned(), u.to_value());
                std::borrow::Cow::Owned(data)
            }
        }
    }

    /// Applies a delta in place: the same merge every store performs. A delta that writes
    /// [`AUTH_USER_KEY`] sets the typed user (a value that is not a user is kept as data, where
    /// [`Session::user`](crate::session::Session::user) reports it as an internal error).
    pub fn apply(&mut self, delta: &Delta) {
        for (k, v) in &delta.set {
            if k == AUTH_USER_KEY
                && let Ok(u) = SessionUser::deserialize(v)
            {
                self.user = Some(u);
                continue;
            }
            self.data.insert(k.clone(), v.clone());
        }
        for k in &delta.remove {
            if k == AUTH_USER_KEY {
                self.user = None;
            }
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
    fn one_copy_per_user_agent_in_the_process() {
        let first = shared_user_agent("curl/8.5.0 (record test)");
        assert!(Arc::ptr_eq(
            &first,
            &shared_user_agent("curl/8.5.0 (record test)")
        ));
        let other = shared_user_agent("curl/8.6.0 (record test)");
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(&*other, "curl/8.6.0 (record test)");
    }

    #[test]
    fn a_full_set_drops_unheld_values_first_and_keeps_taking_new_ones() {
        let mut set = AgentSet::new(3);
        let held = set.get_or_insert("held");
        drop(set.get_or_insert("a"));
        drop(set.get_or_insert("b"));
        // Full: "a" and "b" are held by no record, so they make room; "held" stays shared.
        let c = set.get_or_insert("c");
        assert_eq!(set.0.len(), 2);
        assert!(Arc::ptr_eq(&held, &set.get_or_insert("held")));
        assert!(Arc::ptr_eq(&c, &set.get_or_insert("c")));
        // Every value held and the set full: it starts over rather than stop sharing.
        let d = set.get_or_insert("d");
        let e = set.get_or_insert("e");
        assert!(set.0.len() <= 3, "{:?}", set.0);
        assert!(Arc::ptr_eq(&e, &set.get_or_insert("e")));
        assert_eq!((&*held, &*c, &*d), ("held", "c", "d"));
        // Random values never grow it past its bound.
        let kept: Vec<_> = (0..100)
            .map(|i| set.get_or_insert(&format!("r{i}")))
            .collect();
        assert!(set.0.len() <= 3);
        assert_eq!(&*kept[99], "r99");
    }

    #[test]
    fn a_users_hand_built_json_is_what_serde_writes_and_reads_back() {
        for transport in [Transport::Cookie, Transport::Bearer, Transport::AccessToken] {
            let u = SessionUser {
                id: 42,
                username: "ana\u{e9}".into(),
                auth_time: 1_700_000_000,
                transport,
            };
            assert_eq!(u.to_value(), serde_json::to_value(&u).expect("serializes"));
            assert_eq!(SessionUser::deserialize(&u.to_value()).expect("reads"), u);
        }
    }

    #[test]
    fn the_user_moves_between_data_as_stored_and_the_typed_field() {
        let u = SessionUser {
            id: 7,
            username: "bo".into(),
            auth_time: 5,
            transport: Transport::Bearer,
        };
        let mut r = Record {
            key: SecretToken::generate(TokenKind::Session).hash(),
            user_id: Some(7),
            user: Some(u.clone()),
            data: Map::from_iter([("a".into(), Value::from(1))]),
            created_at: 0,
            last_seen: 0,
            expires_at: 10,
            absolute_expires_at: 50,
            user_agent: None,
        };
        let stored = r.stored_data().into_owned();
        assert_eq!(stored[AUTH_USER_KEY], u.to_value());
        let mut read = r.clone();
        read.user = None;
        read.data = stored;
        read.take_user_from_data().expect("a user");
        assert_eq!(
            read, r,
            "a round trip through the stored form changes nothing"
        );
        // A delta writing or removing the key moves the typed user, never the data.
        let mut other = u.clone();
        other.username = "cy".into();
        r.apply(&Delta {
            set: Map::from_iter([(AUTH_USER_KEY.into(), other.to_value())]),
            ..Delta::default()
        });
        assert_eq!(r.user.as_ref(), Some(&other));
        assert!(!r.data.contains_key(AUTH_USER_KEY));
        r.apply(&Delta {
            remove: vec![AUTH_USER_KEY.into()],
            ..Delta::default()
        });
        assert_eq!(r.user, None);
        // Garbage under the key is corrupt, not a user.
        let mut bad = r.clone();
        bad.data
            .insert(AUTH_USER_KEY.into(), Value::from("not a user"));
        assert!(bad.take_user_from_data().is_err());
    }

    #[test]
    fn apply_merges_keys_and_caps_the_expiry() {
        let mut r = Record {
            key: SecretToken::generate(TokenKind::Session).hash(),
            user_id: None,
            user: None,
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
