-- PostgreSQL twin of migrations/0009_oidc_logout.sql.
CREATE TABLE oidc_sessions (
    sid_hash   TEXT   NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sid_hash, user_id)
);

CREATE INDEX oidc_sessions_by_age ON oidc_sessions (created_at);

CREATE TABLE oidc_logout_jtis (
    issuer     TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);

CREATE INDEX oidc_logout_jtis_by_expiry ON oidc_logout_jtis (expires_at);
