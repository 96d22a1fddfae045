-- Promoters: the small numeric id a referral token carries (it must fit a 32-character wxacode scene)
-- and the openid it stands for, so tokens in links and codes outlive a restart and are the same on every
-- instance. Ids are dense (1, 2, 3…): the insert takes MAX(id) + 1, and a lost race on the primary key is
-- retried (an AUTOINCREMENT or a sequence would be burnt by ON CONFLICT DO NOTHING). Times are unix
-- milliseconds. Keep this file in step with migrations/postgres/0007_promoters.sql.

CREATE TABLE gov_promoters (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id > 0),
    openid     TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
