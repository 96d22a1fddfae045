-- Deposit exit refunds through WeChat Pay, and deposit payments closed unpaid.

-- A deposit payment may now be closed (WeChat Pay still reported it unpaid after its prepay order expired).
ALTER TABLE gov_deposit_payments DROP CONSTRAINT gov_deposit_payments_status_check;
ALTER TABLE gov_deposit_payments
    ADD CONSTRAINT gov_deposit_payments_status_check CHECK (status IN ('pending', 'paid', 'closed'));
CREATE INDEX gov_deposit_payments_by_status ON gov_deposit_payments (status, created_at);
CREATE INDEX gov_deposit_payments_by_merchant ON gov_deposit_payments (merchant_id, status);

-- One row per WeChat Pay refund of a deposit payment (the id is the out_refund_no), or per manual payout
-- (payment_id NULL).
CREATE TABLE gov_deposit_refunds (
    id          TEXT   NOT NULL PRIMARY KEY,
    merchant_id TEXT   NOT NULL REFERENCES merchants (merchant_id),
    payment_id  TEXT   REFERENCES gov_deposit_payments (id),
    amount_fen  BIGINT NOT NULL CHECK (amount_fen > 0),
    status      TEXT   NOT NULL CHECK (status IN ('requested', 'processing', 'succeeded', 'failed', 'manual')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    doc         TEXT   NOT NULL
);
CREATE INDEX gov_deposit_refunds_by_merchant ON gov_deposit_refunds (merchant_id, created_at);
CREATE INDEX gov_deposit_refunds_by_status ON gov_deposit_refunds (status, updated_at);
