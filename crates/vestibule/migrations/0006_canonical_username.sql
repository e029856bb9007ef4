-- One canonical username: lookups compare lower(username) with the canonical (ASCII-lowercase)
-- form byte for byte; this unique index serves them and keeps one account per canonical name.
-- Usernames have always been ASCII-only (validated), so NOCASE never let two rows share one.
CREATE UNIQUE INDEX users_username_canonical ON users (lower(username));
