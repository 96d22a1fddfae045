-- What the platform restricted or suspended by hand (not derived from penalties or the deposit):
-- governance keeps these when it recomputes a merchant's status, until the platform lifts them.
ALTER TABLE merchants ADD COLUMN manual_restrictions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE merchants ADD COLUMN manual_suspension BOOLEAN NOT NULL DEFAULT FALSE;
