-- Issue #20 item 8: the result of each scheduled full verification of every
-- audit chain (the platform's and each tenant's), for the trust page and the
-- chain-failure alert. Deployment-wide facts, no tenant data. See
-- migrations/postgres/0029_chain_verifications.sql.
CREATE TABLE chain_verifications (
    id BLOB PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    chains INTEGER NOT NULL CHECK (chains >= 0),
    events_checked INTEGER NOT NULL CHECK (events_checked >= 0),
    broken INTEGER NOT NULL CHECK (broken >= 0),
    ok INTEGER NOT NULL CHECK (ok IN (0, 1))
);
CREATE INDEX chain_verifications_finished ON chain_verifications (finished_at);
