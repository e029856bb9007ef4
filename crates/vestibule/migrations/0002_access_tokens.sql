-- Personal access tokens (the knox analogue): only the SHA-256 of each token is stored.
CREATE TABLE access_tokens (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    name           TEXT    NOT NULL,
    token_hash     BLOB    NOT NULL UNIQUE,
    -- The first characters of the token, so a user can tell tokens apart; not enough to use one.
    display_prefix TEXT    NOT NULL,
    -- Space-separated scopes: "read", "read write".
    scopes         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    expires_at     INTEGER NOT NULL
);

CREATE INDEX access_tokens_by_user ON access_tokens (user_id);
