-- API keys of merchant staff and platform operators: only the SHA-256 of the secret is kept; a key is
-- looked up by its public id and its digest compared in constant time. Revoked keys stay (revoked_at)
-- so the audit of who did what keeps its subject; expires_at lets a rotated key overlap its successor.
-- Keep this file in step with migrations/sqlite/0009_api_keys.sql.

CREATE TABLE api_keys (
    key_id       TEXT    NOT NULL PRIMARY KEY,
    digest       TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    merchant_id  TEXT,
    label        TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT,
    CHECK ((role = 'Platform') = (merchant_id IS NULL))
);
CREATE INDEX api_keys_by_merchant ON api_keys (merchant_id, key_id);
