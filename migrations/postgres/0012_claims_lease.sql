-- A claim in progress is held for a short lease (its holder may die mid-work: the next delivery must then be
-- able to take it), and only a completed claim is kept for its whole retention: retain_until is when a
-- completed claim expires, and completing one moves expires_at there.
-- Keep this file in step with migrations/sqlite/0012_claims_lease.sql.

ALTER TABLE claims ADD COLUMN retain_until BIGINT NOT NULL DEFAULT 0;
