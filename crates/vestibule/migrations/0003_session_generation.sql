-- Per-user session generation, for the stateless cookie store (session.store = "cookie"): every
-- sealed session carries the generation it was issued under, and logout-all, a password change or
-- disabling the user bump it, which refuses every older cookie on its next request.
ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;
