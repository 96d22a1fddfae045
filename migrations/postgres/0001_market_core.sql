-- Marketplace core: merchants, categories and rules, catalog, inventory, carts, checkout, orders,
-- payments, audit, outbox, timers. Times are unix milliseconds, money is fen, ids are UUIDv7 text.
-- Every merchant-owned table is keyed by merchant_id first (the future distribution column).
-- Keep this file in step with migrations/sqlite/0001_market_core.sql.

CREATE TABLE merchants (
    merchant_id  TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    sub_mchid    TEXT,
    status       TEXT    NOT NULL,
    restrictions BIGINT  NOT NULL DEFAULT 0,
    sellable     BOOLEAN NOT NULL DEFAULT FALSE,
    version      BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE TABLE categories (
    category_id TEXT    NOT NULL PRIMARY KEY,
    parent_id   TEXT    REFERENCES categories (category_id),
    name        TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE category_rules (
    category_id       TEXT    NOT NULL REFERENCES categories (category_id),
    version           BIGINT  NOT NULL CHECK (version > 0),
    deposit_fen       BIGINT  NOT NULL CHECK (deposit_fen >= 0),
    ship_sla_hours    BIGINT  NOT NULL CHECK (ship_sla_hours > 0),
    auto_confirm_days BIGINT  NOT NULL CHECK (auto_confirm_days > 0),
    after_sale_days   BIGINT  NOT NULL CHECK (after_sale_days >= 0),
    seven_day_return  TEXT    NOT NULL,
    commission_bps    BIGINT  NOT NULL CHECK (commission_bps BETWEEN 0 AND 10000),
    effective_from    BIGINT  NOT NULL,
    PRIMARY KEY (category_id, version)
);

CREATE TABLE merchant_categories (
    merchant_id TEXT    NOT NULL REFERENCES merchants (merchant_id),
    category_id TEXT    NOT NULL REFERENCES categories (category_id),
    granted_at  BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, category_id)
);

CREATE TABLE products (
    merchant_id   TEXT    NOT NULL REFERENCES merchants (merchant_id),
    product_id    TEXT    NOT NULL,
    category_id   TEXT    NOT NULL REFERENCES categories (category_id),
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    min_price_fen BIGINT  NOT NULL,
    max_price_fen BIGINT  NOT NULL,
    version       BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, product_id)
);
CREATE INDEX products_by_id ON products (product_id);
CREATE INDEX products_newest ON products (status, product_id);
CREATE INDEX products_by_category ON products (status, category_id, product_id);
CREATE INDEX products_by_price ON products (status, min_price_fen, product_id);

CREATE TABLE skus (
    merchant_id    TEXT    NOT NULL,
    sku_id         TEXT    NOT NULL,
    product_id     TEXT    NOT NULL,
    attrs          TEXT    NOT NULL,
    price_fen      BIGINT  NOT NULL CHECK (price_fen > 0),
    purchase_limit BIGINT  CHECK (purchase_limit IS NULL OR purchase_limit > 0),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, sku_id),
    FOREIGN KEY (merchant_id, product_id) REFERENCES products (merchant_id, product_id)
);
CREATE INDEX skus_by_id ON skus (sku_id);
CREATE INDEX skus_by_product ON skus (merchant_id, product_id);

CREATE TABLE inventory (
    merchant_id TEXT    NOT NULL,
    sku_id      TEXT    NOT NULL,
    on_hand     BIGINT  NOT NULL,
    reserved    BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, sku_id),
    FOREIGN KEY (merchant_id, sku_id) REFERENCES skus (merchant_id, sku_id),
    CONSTRAINT inventory_reserved_within_on_hand CHECK (0 <= reserved AND reserved <= on_hand)
);
CREATE INDEX inventory_by_sku ON inventory (sku_id);

CREATE TABLE stock_movements (
    merchant_id    TEXT    NOT NULL,
    movement_id    TEXT    NOT NULL,
    sku_id         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    on_hand_delta  BIGINT  NOT NULL,
    reserved_delta BIGINT  NOT NULL,
    ref_id         TEXT,
    at             BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, movement_id)
);
CREATE INDEX stock_movements_by_sku ON stock_movements (merchant_id, sku_id, movement_id);

CREATE TABLE checkout_groups (
    group_id       TEXT    NOT NULL PRIMARY KEY,
    buyer_openid   TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    subtotal_fen   BIGINT  NOT NULL,
    discount_fen   BIGINT  NOT NULL CHECK (discount_fen >= 0),
    total_fen      BIGINT  NOT NULL CHECK (total_fen > 0),
    merchant_count BIGINT  NOT NULL,
    pay_deadline   BIGINT  NOT NULL,
    version        BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    CHECK (total_fen = subtotal_fen - discount_fen)
);
CREATE INDEX checkout_groups_by_buyer ON checkout_groups (buyer_openid, group_id);

CREATE TABLE reservations (
    merchant_id    TEXT    NOT NULL,
    reservation_id TEXT    NOT NULL,
    group_id       TEXT    NOT NULL REFERENCES checkout_groups (group_id),
    order_id       TEXT    NOT NULL,
    sku_id         TEXT    NOT NULL,
    qty            BIGINT  NOT NULL CHECK (qty > 0),
    status         TEXT    NOT NULL,
    expires_at     BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, reservation_id),
    UNIQUE (merchant_id, order_id, sku_id)
);
CREATE INDEX reservations_by_group ON reservations (group_id);
CREATE INDEX reservations_by_sku ON reservations (merchant_id, sku_id, status);

CREATE TABLE cart_lines (
    owner          TEXT    NOT NULL,
    sku_id         TEXT    NOT NULL,
    merchant_id    TEXT    NOT NULL,
    qty            BIGINT  NOT NULL CHECK (qty > 0),
    unit_price_fen BIGINT  NOT NULL,
    added_at       BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (owner, sku_id)
);

CREATE TABLE idempotency_keys (
    scope        TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (scope, idem_key)
);

CREATE TABLE merchant_orders (
    merchant_id       TEXT    NOT NULL REFERENCES merchants (merchant_id),
    order_id          TEXT    NOT NULL,
    group_id          TEXT    NOT NULL REFERENCES checkout_groups (group_id),
    buyer_openid      TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    subtotal_fen      BIGINT  NOT NULL,
    discount_fen      BIGINT  NOT NULL,
    total_fen         BIGINT  NOT NULL CHECK (total_fen > 0),
    commission_fen    BIGINT  NOT NULL,
    ship_sla_hours    BIGINT  NOT NULL,
    auto_confirm_days BIGINT  NOT NULL,
    after_sale_days   BIGINT  NOT NULL,
    transaction_id    TEXT,
    paid_at           BIGINT,
    ship_deadline     BIGINT,
    shipped_at        BIGINT,
    received_at       BIGINT,
    received_by       TEXT,
    completed_at      BIGINT,
    cancelled_at      BIGINT,
    cancel_reason     TEXT,
    version           BIGINT  NOT NULL,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, order_id),
    CHECK (total_fen = subtotal_fen - discount_fen)
);
CREATE INDEX merchant_orders_by_id ON merchant_orders (order_id);
CREATE INDEX merchant_orders_by_group ON merchant_orders (group_id);
CREATE INDEX merchant_orders_by_buyer ON merchant_orders (buyer_openid, order_id);
CREATE INDEX merchant_orders_by_status ON merchant_orders (merchant_id, status, order_id);

CREATE TABLE order_lines (
    merchant_id    TEXT    NOT NULL,
    order_id       TEXT    NOT NULL,
    line_no        BIGINT  NOT NULL,
    sku_id         TEXT    NOT NULL,
    product_id     TEXT    NOT NULL,
    title          TEXT    NOT NULL,
    attrs          TEXT    NOT NULL,
    category_id    TEXT    NOT NULL,
    rule_version   BIGINT  NOT NULL,
    unit_price_fen BIGINT  NOT NULL,
    qty            BIGINT  NOT NULL CHECK (qty > 0),
    line_total_fen BIGINT  NOT NULL,
    discount_fen   BIGINT  NOT NULL,
    commission_bps BIGINT  NOT NULL,
    commission_fen BIGINT  NOT NULL,
    shipped_qty    BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, order_id, line_no),
    FOREIGN KEY (merchant_id, order_id) REFERENCES merchant_orders (merchant_id, order_id),
    FOREIGN KEY (category_id, rule_version) REFERENCES category_rules (category_id, version),
    CHECK (line_total_fen = unit_price_fen * qty),
    CHECK (0 <= shipped_qty AND shipped_qty <= qty)
);

CREATE TABLE shipments (
    merchant_id     TEXT    NOT NULL,
    shipment_id     TEXT    NOT NULL,
    order_id        TEXT    NOT NULL,
    tracking_no     TEXT    NOT NULL,
    express_company TEXT    NOT NULL,
    items           TEXT    NOT NULL,
    shipped_at      BIGINT  NOT NULL,
    PRIMARY KEY (merchant_id, shipment_id),
    UNIQUE (merchant_id, order_id, tracking_no)
);

CREATE TABLE payments (
    group_id       TEXT    NOT NULL PRIMARY KEY REFERENCES checkout_groups (group_id),
    buyer_openid   TEXT    NOT NULL,
    mode           TEXT    NOT NULL,
    amount_fen     BIGINT  NOT NULL CHECK (amount_fen > 0),
    status         TEXT    NOT NULL,
    prepay_id      TEXT,
    pay_params     TEXT,
    transaction_id TEXT,
    paid_at        BIGINT,
    refunded_fen   BIGINT  NOT NULL,
    version        BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    CHECK (0 <= refunded_fen AND refunded_fen <= amount_fen)
);

CREATE TABLE payment_notices (
    notify_id      TEXT    NOT NULL PRIMARY KEY,
    out_trade_no   TEXT    NOT NULL,
    transaction_id TEXT    NOT NULL,
    received_at    BIGINT  NOT NULL
);

CREATE TABLE refunds (
    refund_id      TEXT    NOT NULL PRIMARY KEY,
    group_id       TEXT    NOT NULL REFERENCES checkout_groups (group_id),
    order_id       TEXT,
    merchant_id    TEXT,
    out_trade_no   TEXT    NOT NULL,
    transaction_id TEXT,
    sub_mchid      TEXT,
    amount_fen     BIGINT  NOT NULL CHECK (amount_fen > 0),
    total_fen      BIGINT  NOT NULL,
    reason         TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    wx_refund_id   TEXT,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    CHECK (amount_fen <= total_fen)
);
CREATE INDEX refunds_by_group ON refunds (group_id);

CREATE TABLE audit_log (
    audit_id       TEXT    NOT NULL PRIMARY KEY,
    merchant_id    TEXT,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    from_state     TEXT,
    to_state       TEXT,
    reason         TEXT,
    at             BIGINT  NOT NULL
);
CREATE INDEX audit_log_by_aggregate ON audit_log (aggregate_id, audit_id);
CREATE INDEX audit_log_by_type ON audit_log (aggregate_type, audit_id);

CREATE TABLE outbox (
    event_id       TEXT    NOT NULL PRIMARY KEY,
    merchant_id    TEXT,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX outbox_by_time ON outbox (created_at, event_id);

CREATE TABLE outbox_acks (
    consumer TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    acked_at BIGINT  NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE timers (
    timer_id       TEXT    NOT NULL PRIMARY KEY,
    merchant_id    TEXT,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    due_at         BIGINT  NOT NULL,
    status         TEXT    NOT NULL,
    attempts       BIGINT  NOT NULL,
    last_error     TEXT,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);
CREATE INDEX timers_due ON timers (status, due_at);
CREATE INDEX timers_by_aggregate ON timers (aggregate_id, action, status);
