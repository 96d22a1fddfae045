-- A claim is held while its work runs and, once the work completed, remembered as done until expires_at:
-- a redelivery then learns whether to answer "already processed" or "being processed, retry later".
-- Keep this file in step with migrations/sqlite/0011_claims_done.sql.

ALTER TABLE claims ADD COLUMN done BOOLEAN NOT NULL DEFAULT FALSE;
