-- The regulator's role, and the audit head kept from moving backwards.
--
-- `claims_regulator` reads the audit log, the chain's head, the decisions (`claims`) and the
-- rule sources, and nothing else; it can write nothing. It cannot log in: a DBA gives it to
-- the regulator's own login, e.g.
--     CREATE ROLE inspector LOGIN PASSWORD '…' IN ROLE claims_regulator;
-- Roles belong to the whole PostgreSQL cluster while grants belong to one database: the role
-- is created only if absent (several databases, or several migrating at once, may share it)
-- and the grants are made here, in each database. Creating a role needs CREATEROLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'claims_regulator') THEN
        CREATE ROLE claims_regulator NOLOGIN;
    END IF;
EXCEPTION
    -- Another database's migration created it between the check and the CREATE.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO claims_regulator', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO claims_regulator;
GRANT SELECT ON audit_log, audit_head, claims, rule_sources TO claims_regulator;

-- The head of the chain moves forward only, to an entry that exists: a batch inserts its
-- entries, then sets the head to the last one, in the same transaction. Together with the
-- append-only audit_log this keeps even the worker's own role from rewinding or forking the
-- chain (a superuser can still disable triggers; `claimctl audit verify` is what detects that).
CREATE FUNCTION audit_head_moves_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_head cannot be removed: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.seq <= OLD.seq
       OR NOT EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash) THEN
        RAISE EXCEPTION 'audit_head only moves forward to an entry of audit_log: (%, %) refused', NEW.seq, NEW.hash
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_head_forward_only
    BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_moves_forward();

CREATE TRIGGER audit_head_no_truncate
    BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_moves_forward();
