-- The audit head's "points to an entry" check moves to an AFTER trigger, so that a batch can
-- insert its entries and move the head in one statement.
--
-- A batch holds the head's row lock from placing its entries until its commit, and every batch
-- of every worker waits for that lock. The BEFORE trigger of 20261115000001_regulator.sql could
-- not see entries inserted by the same statement (every part of a data-modifying WITH reads the
-- snapshot the statement started with), so the head was moved by a statement of its own: one
-- more round trip inside that lock, on every batch. Row-level AFTER triggers run once the whole
-- statement is done and see everything it wrote, so the check can move there unchanged in
-- strength:
-- - BEFORE UPDATE, DELETE, TRUNCATE (unchanged trigger, narrower function): the head is never
--   removed, and an update keeps its id and moves seq forward;
-- - AFTER UPDATE (new): the row the head now names exists in audit_log with that hash. A failed
--   check raises, which aborts the statement and so the transaction, like the BEFORE check did.
CREATE OR REPLACE FUNCTION audit_head_moves_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_head cannot be removed: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'audit_head only moves forward to an entry of audit_log: (%, %) refused', NEW.seq, NEW.hash
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_head_names_an_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash) THEN
        RAISE EXCEPTION 'audit_head only moves forward to an entry of audit_log: (%, %) refused', NEW.seq, NEW.hash
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_head_names_an_entry
    AFTER UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_names_an_entry();
