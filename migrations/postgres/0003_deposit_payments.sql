-- Deposit pay-ins asked of WeChat Pay (the out_trade_no is the id); one per merchant and key.
CREATE TABLE gov_deposit_payments (
    id          TEXT   NOT NULL PRIMARY KEY,
    merchant_id TEXT   NOT NULL REFERENCES merchants (merchant_id),
    idem_key    TEXT   NOT NULL,
    amount_fen  BIGINT NOT NULL CHECK (amount_fen > 0),
    status      TEXT   NOT NULL CHECK (status IN ('pending', 'paid')),
    created_at  BIGINT NOT NULL,
    doc         TEXT   NOT NULL,
    UNIQUE (merchant_id, idem_key)
);
