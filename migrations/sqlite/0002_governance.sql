-- Governance: double-entry ledger, deposits, reviews, after-sale cases and disputes, penalties and the
-- restrictions and delistings they cause, commission rules, settlements, profit sharing, promoters.
-- Times are unix milliseconds, money is fen. Each aggregate keeps its full state as JSON in `doc`; the
-- columns are what queries filter on and what the constraints guard (one review per line, one open
-- case per line, one penalty per violation, a reversal per transaction).
-- Keep this file in step with migrations/postgres/0002_governance.sql.

CREATE TABLE gov_config (
    config_key TEXT   NOT NULL PRIMARY KEY,
    doc        TEXT   NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE gov_ledger_txns (
    txn_id    TEXT   NOT NULL PRIMARY KEY,
    kind      TEXT   NOT NULL,
    reference TEXT   NOT NULL,
    reverses  TEXT   UNIQUE REFERENCES gov_ledger_txns (txn_id),
    at        INTEGER NOT NULL
);
CREATE INDEX gov_ledger_txns_by_reference ON gov_ledger_txns (reference, at);

CREATE TABLE gov_ledger_entries (
    txn_id     TEXT   NOT NULL REFERENCES gov_ledger_txns (txn_id),
    seq        INTEGER NOT NULL,
    account    TEXT   NOT NULL,
    amount_fen INTEGER NOT NULL CHECK (amount_fen <> 0),
    PRIMARY KEY (txn_id, seq)
);
CREATE INDEX gov_ledger_entries_by_account ON gov_ledger_entries (account);

-- The balance projection, kept in the same transaction as the entries (and checkable against them).
CREATE TABLE gov_balances (
    account     TEXT   NOT NULL PRIMARY KEY,
    balance_fen INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE gov_deposits (
    merchant_id  TEXT   NOT NULL PRIMARY KEY REFERENCES merchants (merchant_id),
    required_fen INTEGER NOT NULL CHECK (required_fen >= 0),
    status       TEXT   NOT NULL,
    grace_until  INTEGER,
    version      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    doc          TEXT   NOT NULL
);

CREATE TABLE gov_reviews (
    merchant_id  TEXT   NOT NULL,
    review_id    TEXT   NOT NULL PRIMARY KEY,
    order_id     TEXT   NOT NULL,
    line_no      INTEGER NOT NULL,
    buyer_openid TEXT   NOT NULL,
    category_id  TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    created_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    doc          TEXT   NOT NULL,
    UNIQUE (order_id, line_no)
);
CREATE INDEX gov_reviews_by_merchant ON gov_reviews (merchant_id, created_at);
CREATE INDEX gov_reviews_by_category ON gov_reviews (category_id, created_at);

CREATE TABLE gov_cases (
    merchant_id  TEXT    NOT NULL,
    case_id      TEXT    NOT NULL PRIMARY KEY,
    order_id     TEXT    NOT NULL,
    line_no      INTEGER  NOT NULL,
    buyer_openid TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    is_open      INTEGER NOT NULL,
    refund_id    TEXT,
    opened_at    INTEGER  NOT NULL,
    version      INTEGER  NOT NULL,
    doc          TEXT    NOT NULL
);
CREATE UNIQUE INDEX gov_cases_one_open_per_line ON gov_cases (order_id, line_no) WHERE is_open = 1;
CREATE INDEX gov_cases_by_line ON gov_cases (order_id, line_no);
CREATE INDEX gov_cases_by_merchant ON gov_cases (merchant_id, opened_at);
CREATE INDEX gov_cases_by_refund ON gov_cases (refund_id);

CREATE TABLE gov_disputes (
    merchant_id TEXT   NOT NULL,
    dispute_id  TEXT   NOT NULL PRIMARY KEY,
    case_id     TEXT   UNIQUE,
    order_id    TEXT   NOT NULL,
    line_no     INTEGER NOT NULL,
    state       TEXT   NOT NULL,
    opened_at   INTEGER NOT NULL,
    decided_at  INTEGER,
    version     INTEGER NOT NULL,
    doc         TEXT   NOT NULL
);
CREATE INDEX gov_disputes_by_merchant ON gov_disputes (merchant_id, opened_at);

CREATE TABLE gov_penalties (
    merchant_id   TEXT   NOT NULL,
    penalty_id    TEXT   NOT NULL PRIMARY KEY,
    violation_key TEXT   NOT NULL UNIQUE,
    status        TEXT   NOT NULL,
    created_at    INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    doc           TEXT   NOT NULL
);
CREATE INDEX gov_penalties_by_merchant ON gov_penalties (merchant_id, created_at);

CREATE TABLE gov_restrictions (
    merchant_id    TEXT   NOT NULL,
    restriction_id TEXT   NOT NULL PRIMARY KEY,
    kind           TEXT   NOT NULL,
    source         TEXT   NOT NULL,
    from_at        INTEGER NOT NULL,
    until_at       INTEGER,
    lifted_at      INTEGER
);
CREATE INDEX gov_restrictions_by_merchant ON gov_restrictions (merchant_id);

-- Which penalty took which product down: a product is relisted only when no penalty holds it.
CREATE TABLE gov_delistings (
    merchant_id TEXT   NOT NULL,
    product_id  TEXT   NOT NULL,
    penalty_id  TEXT   NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (penalty_id, product_id)
);
CREATE INDEX gov_delistings_by_product ON gov_delistings (merchant_id, product_id);

CREATE TABLE gov_commission_rules (
    rule_id    TEXT   NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL,
    doc        TEXT   NOT NULL
);

CREATE TABLE gov_settlements (
    merchant_id      TEXT   NOT NULL,
    order_id         TEXT   NOT NULL PRIMARY KEY,
    state            TEXT   NOT NULL,
    window_closes_at INTEGER,
    backstop_at      INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    doc              TEXT   NOT NULL
);
CREATE INDEX gov_settlements_by_merchant ON gov_settlements (merchant_id, state);

CREATE TABLE gov_profit_shares (
    merchant_id  TEXT   NOT NULL,
    out_order_no TEXT   NOT NULL PRIMARY KEY,
    order_id     TEXT   NOT NULL,
    amount_fen   INTEGER NOT NULL CHECK (amount_fen >= 0),
    status       TEXT   NOT NULL,
    created_at   INTEGER NOT NULL,
    doc          TEXT   NOT NULL
);
CREATE INDEX gov_profit_shares_by_order ON gov_profit_shares (order_id);

-- Compensation paid to buyers outside a refund of the original payment (deposit, platform).
CREATE TABLE gov_payouts (
    merchant_id  TEXT   NOT NULL,
    payout_id    TEXT   NOT NULL PRIMARY KEY,
    buyer_openid TEXT   NOT NULL,
    amount_fen   INTEGER NOT NULL CHECK (amount_fen > 0),
    source       TEXT   NOT NULL,
    reference    TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE gov_clicks (
    buyer_openid TEXT   NOT NULL,
    share_token  TEXT   NOT NULL,
    promoter_id  TEXT   NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (buyer_openid, share_token, at)
);

CREATE TABLE gov_attributions (
    merchant_id    TEXT   NOT NULL,
    attribution_id TEXT   NOT NULL PRIMARY KEY,
    order_id       TEXT   NOT NULL UNIQUE,
    promoter_id    TEXT   NOT NULL,
    state          TEXT   NOT NULL,
    version        INTEGER NOT NULL,
    doc            TEXT   NOT NULL
);
CREATE INDEX gov_attributions_by_promoter ON gov_attributions (promoter_id, state);

CREATE TABLE gov_carrier_events (
    merchant_id TEXT   NOT NULL,
    order_id    TEXT   NOT NULL PRIMARY KEY,
    first_at    INTEGER NOT NULL
);

CREATE TABLE gov_order_flags (
    merchant_id TEXT   NOT NULL,
    order_id    TEXT   NOT NULL PRIMARY KEY,
    reason      TEXT   NOT NULL,
    at          INTEGER NOT NULL
);
