-- Compensation paid through WeChat Pay merchant transfers (商家转账): one row per transfer bill asked
-- for a payout (the first attempt's out_bill_no is the payout id; a re-issue gets a new one).
CREATE TABLE gov_compensation_transfers (
    out_bill_no  TEXT   NOT NULL PRIMARY KEY,
    payout_id    TEXT   NOT NULL REFERENCES gov_payouts (payout_id),
    buyer_openid TEXT   NOT NULL,
    attempt      INTEGER NOT NULL CHECK (attempt > 0),
    state        TEXT   NOT NULL,
    updated_at   INTEGER NOT NULL,
    doc          TEXT   NOT NULL,
    UNIQUE (payout_id, attempt)
);

CREATE INDEX gov_compensation_transfers_state ON gov_compensation_transfers (state, updated_at);
CREATE INDEX gov_payouts_buyer ON gov_payouts (buyer_openid, created_at);
