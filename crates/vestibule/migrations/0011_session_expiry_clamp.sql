-- Every session row now holds expires_at <= absolute_expires_at (the store clamps on each
-- write), so the purge finds expired rows through sessions_by_expiry alone. Rows written before
-- get the same clamp here. Loads already checked both columns, so no session changes meaning.
UPDATE sessions SET expires_at = absolute_expires_at WHERE expires_at > absolute_expires_at;
