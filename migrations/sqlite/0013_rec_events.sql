-- Behaviour events for recommendation (market::recommend): a buyer (openid, unionid or a guest's
-- "device:…" id, merged at login) did something with a product, from some surface. event_id is the
-- idempotency key: a redelivered event is stored once. Pruned by time.
-- Keep this file in step with migrations/postgres/0013_rec_events.sql.

CREATE TABLE rec_events (
    event_id    TEXT    NOT NULL PRIMARY KEY,
    buyer       TEXT    NOT NULL,
    product_id  TEXT    NOT NULL,
    merchant_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    surface     TEXT    NOT NULL,
    at          INTEGER  NOT NULL
);
CREATE INDEX rec_events_by_buyer ON rec_events (buyer, at);
CREATE INDEX rec_events_by_time ON rec_events (at, event_id);
