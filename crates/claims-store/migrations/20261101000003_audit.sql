-- The hash-chained audit log.
--
-- `entry` is the audit/v1 JSON line exactly as hashed: it is kept as text, never as jsonb,
-- because jsonb would reorder keys and normalize numbers, and the hash covers the bytes.
CREATE TABLE audit_log (
    seq   bigint PRIMARY KEY CHECK (seq > 0),
    entry text NOT NULL,
    hash  text NOT NULL
);

-- The chain's head: the last sequence and hash. One row, locked by each batch just before it
-- commits, so entries are chained in commit order whatever the number of workers.
CREATE TABLE audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (true, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only, enforced by the database itself, not by the goodwill of the code: an entry
-- cannot be changed or removed, even by a buggy or compromised worker. (A superuser can still
-- disable triggers; the hash chain is what detects that.)
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
