-- Tail protection (SPEC §2.7): each chain head carries an HMAC-SHA256 over
-- (tenant, seq, hash) under the server key `audit_head_hmac`, so deleting the
-- newest events and rewriting the head to match is detected by verify.
-- Heads written before this migration have no signature: the first start
-- that installs the key signs them once and sets `done`, in one transaction;
-- after that a head without a valid signature fails verification.
-- Retention: `base_seq`/`base_hash` are the checkpoint of the last purged
-- event (0 and the genesis hash until a purge); verify starts from it, and the
-- head signature covers it, so a rewritten checkpoint fails verification.
-- stockade_app already has UPDATE on audit_heads (0001_core.sql), which
-- covers the new column.
ALTER TABLE audit_heads ADD COLUMN sig text;
ALTER TABLE audit_heads ADD COLUMN base_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE audit_heads ADD COLUMN base_hash text NOT NULL
    DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';

CREATE TABLE audit_head_signing (
    id    integer PRIMARY KEY CHECK (id = 1),
    done  integer NOT NULL CHECK (done IN (0, 1))
);
INSERT INTO audit_head_signing (id, done) VALUES (1, 0);
GRANT SELECT, UPDATE ON audit_head_signing TO stockade_app;

-- The retention purge (SPEC §2.7). stockade_app may not DELETE audit events;
-- this function, owned by the migration owner, deletes one tenant's events up
-- to the checkpoint the caller has already written into its head row, and
-- only for the tenant of the current transaction. So the server can drop
-- events only behind a recorded checkpoint, which the head signature covers.
CREATE FUNCTION audit_purge(p_tenant uuid, p_upto bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF p_tenant IS DISTINCT FROM stockade_current_tenant() THEN
        RAISE EXCEPTION 'audit_purge: not the current tenant';
    END IF;
    IF p_upto IS DISTINCT FROM (SELECT base_seq FROM audit_heads WHERE tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'audit_purge: no checkpoint at %', p_upto;
    END IF;
    DELETE FROM audit_events WHERE tenant_id = p_tenant AND seq <= p_upto;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION audit_purge(uuid, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_purge(uuid, bigint) TO stockade_app;
