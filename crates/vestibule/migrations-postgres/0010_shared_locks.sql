-- PostgreSQL twin of migrations/0010_shared_locks.sql.
CREATE TABLE shared_locks (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL -- Unix milliseconds
);
