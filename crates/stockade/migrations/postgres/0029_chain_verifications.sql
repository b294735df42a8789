-- Issue #20 item 8: the result of each scheduled full verification of every
-- audit chain (the platform's and each tenant's), for the trust page and the
-- chain-failure alert. Deployment-wide facts, no tenant data: a global table
-- (no tenant_id, no row-level security). See
-- migrations/sqlite/0029_chain_verifications.sql.
CREATE TABLE chain_verifications (
    id uuid PRIMARY KEY,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    chains bigint NOT NULL CHECK (chains >= 0),
    events_checked bigint NOT NULL CHECK (events_checked >= 0),
    broken bigint NOT NULL CHECK (broken >= 0),
    ok boolean NOT NULL
);
CREATE INDEX chain_verifications_finished ON chain_verifications (finished_at);
