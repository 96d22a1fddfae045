-- Claims of once-only work that must outlive a restart and be shared by every instance: a processed
-- push (WeChat redelivers, and an attacker may replay a captured one), keyed by scope and key, held until
-- expires_at. A claim is taken by an insert, or by an update of an expired row.
-- Keep this file in step with migrations/sqlite/0010_claims.sql.

CREATE TABLE claims (
    scope      TEXT    NOT NULL,
    claim_key  TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (scope, claim_key)
);
CREATE INDEX claims_by_expiry ON claims (expires_at);
