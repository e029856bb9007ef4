-- Short locks shared by every process on the database (SessionStore::try_lock): work that must
-- happen once across instances, such as refreshing a session's rotating provider tokens. A lock
-- is taken by inserting its row, or by overwriting an expired one; released by deleting it only
-- while `holder` is still the releaser's random value. Expired rows are purged with expired
-- sessions.
CREATE TABLE shared_locks (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL -- Unix milliseconds
);
