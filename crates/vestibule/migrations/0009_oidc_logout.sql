-- Back-channel logout (auth/oidc/logout.rs). The provider's session id (`sid`) of each login,
-- hashed with its issuer: the way from a logout token's `sid` to the users whose sessions carry
-- it (the session stores index sessions by user only). Rows older than the longest session
-- lifetime are purged at the next login.
CREATE TABLE oidc_sessions (
    sid_hash   TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sid_hash, user_id)
);

CREATE INDEX oidc_sessions_by_age ON oidc_sessions (created_at);

-- Logout tokens received (issuer, jti), until their `iat` leaves the accepted window: a replay
-- is refused by every instance sharing the database.
CREATE TABLE oidc_logout_jtis (
    issuer     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);

CREATE INDEX oidc_logout_jtis_by_expiry ON oidc_logout_jtis (expires_at);
