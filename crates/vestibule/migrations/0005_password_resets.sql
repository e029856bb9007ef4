-- One-time password reset tokens issued by `vestibule user reset-password` (an administrator
-- never chooses or sees the user's password). Only the SHA-256 of each token is stored; a token
-- is single use (used_at) and short-lived (expires_at).
CREATE TABLE password_resets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);

CREATE INDEX password_resets_by_user ON password_resets (user_id);
