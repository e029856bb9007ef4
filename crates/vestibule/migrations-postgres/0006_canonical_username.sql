-- One canonical username, compared deterministically. The column's ICU collation
-- `und-u-ks-level2` (0001) is non-deterministic: it made fullwidth, mathematical, circled and
-- superscript letters, soft hyphens, zero-width and control characters equal to ASCII, so
-- `ａｄｍｉｎ` found the row of `admin`. The column moves to the byte-wise "C" collation and
-- lookups compare lower(username) with the canonical (ASCII-lowercase) form, served by a unique
-- index, exactly as on SQLite (migrations/0006).
--
-- Existing rows: usernames have always been validated as ASCII (letters, digits, @ . + - _), and
-- for ASCII the level-2 collation was plain case-insensitivity, so no two rows share a lowercase
-- form and the unique index builds; the rows themselves are unchanged.
ALTER TABLE users ALTER COLUMN username TYPE TEXT COLLATE "C";
CREATE UNIQUE INDEX users_username_canonical ON users (lower(username));
