-- Tail protection (SPEC §2.7): each chain head carries an HMAC-SHA256 over
-- (tenant, seq, hash) under the server key `audit_head_hmac`, so deleting the
-- newest events and rewriting the head to match is detected by verify.
-- Heads written before this migration have no signature: the first start
-- that installs the key signs them once and sets `done`, in one transaction;
-- after that a head without a valid signature fails verification.
-- Retention: `base_seq`/`base_hash` are the checkpoint of the last purged
-- event (0 and the genesis hash until a purge); verify starts from it, and the
-- head signature covers it, so a rewritten checkpoint fails verification.
ALTER TABLE audit_heads ADD COLUMN sig TEXT;
ALTER TABLE audit_heads ADD COLUMN base_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_heads ADD COLUMN base_hash TEXT NOT NULL
    DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';

CREATE TABLE audit_head_signing (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    done  INTEGER NOT NULL CHECK (done IN (0, 1))
) STRICT;
INSERT INTO audit_head_signing (id, done) VALUES (1, 0);
