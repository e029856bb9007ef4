-- Second factors (auth/mfa): TOTP, its recovery codes, and passkeys (WebAuthn credentials).

-- One TOTP authenticator per user. Active once `confirmed_at` is set (a first code proved the
-- user's app has the secret). `secret` is sealed with a key derived from `secret_key`
-- ("v1:" + base64(nonce ‖ ciphertext ‖ tag)), or "plain:" + base32 when no secret_key is set.
CREATE TABLE mfa_totp (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id),
    secret       TEXT    NOT NULL,
    confirmed_at INTEGER,
    -- The last accepted time step: a code of this step or an earlier one is a replay.
    last_step    INTEGER,
    created_at   INTEGER NOT NULL
);

-- Single-use recovery codes: only the SHA-256 of each (80-bit random) code is stored.
CREATE TABLE mfa_recovery_codes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    code_hash  BLOB    NOT NULL,
    used_at    INTEGER
);

CREATE INDEX mfa_recovery_codes_by_user ON mfa_recovery_codes (user_id);

-- Passkeys: the webauthn-rs `Passkey` (public key, counter) as JSON, found by credential id for
-- passwordless login; `user_handle` is the random WebAuthn user id the authenticator stores.
CREATE TABLE webauthn_credentials (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    credential_id BLOB    NOT NULL UNIQUE,
    user_handle   BLOB    NOT NULL,
    passkey       TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);

CREATE INDEX webauthn_credentials_by_user ON webauthn_credentials (user_id);
