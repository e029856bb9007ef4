-- External identities (auth/oidc): a user signs in through an OpenID Connect provider. An
-- identity is keyed by the provider's (issuer, subject), never by an e-mail address.
CREATE TABLE oidc_identities (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    provider   TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    email      TEXT,
    created_at INTEGER NOT NULL,
    last_login INTEGER,
    UNIQUE (issuer, subject)
);

CREATE INDEX oidc_identities_by_user ON oidc_identities (user_id);
