-- Users: the analogue of django.contrib.auth's user table.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- ASCII-only usernames (validated), so NOCASE makes uniqueness fully case-insensitive.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    is_active     INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    last_login    INTEGER
);

-- Durable sessions, keyed by the SHA-256 of the token (never the token itself).
CREATE TABLE sessions (
    key                 BLOB    PRIMARY KEY,
    user_id             INTEGER,
    data                TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    last_seen           INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    user_agent          TEXT
) WITHOUT ROWID;

CREATE INDEX sessions_by_user ON sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
