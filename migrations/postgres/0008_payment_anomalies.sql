-- Money events the market did not ask for (a wrong amount, a second transaction for a paid checkout, a
-- refund made outside the market), recorded with a state machine instead of dropped or answered 500.
-- event_key (txn:<transaction_id>, refund:<out_refund_no>) is unique per kind, so a redelivered notification
-- or a reconciliation finding the same event records nothing twice. Times are unix
-- milliseconds, money fen. Keep this file in step with migrations/sqlite/0008_payment_anomalies.sql.

CREATE TABLE payment_anomalies (
    anomaly_id     TEXT    NOT NULL PRIMARY KEY,
    kind           TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    group_id       TEXT    NOT NULL,
    order_id       TEXT,
    out_trade_no   TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    event_key      TEXT    NOT NULL,
    amount_fen     BIGINT  NOT NULL,
    expected_fen   BIGINT,
    refund_id      TEXT,
    detail         TEXT    NOT NULL,
    note           TEXT,
    version        BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    UNIQUE (kind, event_key)
);
CREATE INDEX payment_anomalies_by_status ON payment_anomalies (status, anomaly_id);
CREATE UNIQUE INDEX payment_anomalies_by_refund ON payment_anomalies (refund_id);
