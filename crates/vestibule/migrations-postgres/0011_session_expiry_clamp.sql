-- PostgreSQL twin of migrations/0011_session_expiry_clamp.sql.
UPDATE sessions SET expires_at = absolute_expires_at WHERE expires_at > absolute_expires_at;
