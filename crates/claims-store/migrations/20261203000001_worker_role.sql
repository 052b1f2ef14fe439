-- The worker's role: what `claimctl worker`, `claimctl claims retry`, the outbox relay and the
-- rule pack hot reload need, and nothing more.
--
-- The tables belong to the role that runs the migrations (the owner); the worker logs in as
-- `claims_worker`, which owns nothing. So it cannot ALTER or DROP a table, drop or disable the
-- triggers that keep `audit_log`, `audit_head` and `rule_publications` append-only, TRUNCATE,
-- or create anything in schema public; a compromised worker can decide claims wrongly (every
-- such decision is in the hash-chained audit log) but cannot rewrite history.
--
-- The role is created with LOGIN and no password: a deployment sets one
--     ALTER ROLE claims_worker PASSWORD '…';
-- or maps its own authentication (certificates, a pg_hba rule) to it; the tests use the
-- loopback `trust` rule of the development machines. Like `claims_regulator`, the role is
-- cluster-wide and created only if absent, while the grants are made here, in each database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'claims_worker') THEN
        CREATE ROLE claims_worker LOGIN;
    END IF;
EXCEPTION
    -- Another database's migration created it between the check and the CREATE.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO claims_worker', current_database());
END
$$;
-- PostgreSQL 15 already creates schema public without CREATE for PUBLIC; older servers did
-- not. Stated here so no version lets the worker create a table or a function (a migrator that
-- does not own the schema gets a warning, not an error).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO claims_worker;

-- The registry is imported by the owner (`claimctl registry import`): the worker reads it.
GRANT SELECT ON members, providers TO claims_worker;
-- Rule sources are stored by content hash before anything is decided with them: the worker
-- stores its folder's pack at start (when none is published) and `claims retry` the pack it
-- retries with. Content-addressed rows are only ever added. Publishing is the owner's
-- (`claimctl rules publish|activate`): the worker reads the publications to hot-reload.
GRANT SELECT, INSERT ON rule_sources TO claims_worker;
GRANT SELECT ON rule_publications TO claims_worker;

-- A batch's writes (`Store::decide`).
GRANT SELECT, INSERT ON counters TO claims_worker;
GRANT UPDATE (value) ON counters TO claims_worker;
GRANT SELECT, INSERT, UPDATE ON claims TO claims_worker;
-- A cancellation takes the reversed lines out of the duplicate-detection history.
GRANT SELECT, INSERT, DELETE ON line_history TO claims_worker;
GRANT SELECT, INSERT ON rejected_messages TO claims_worker;
-- The audit log is appended to and read (retries read the submitter of the failed decision);
-- its head is locked and moved forward (the trigger refuses any other move).
GRANT SELECT, INSERT ON audit_log TO claims_worker;
GRANT SELECT ON audit_head TO claims_worker;
GRANT UPDATE (seq, hash) ON audit_head TO claims_worker;
-- The outbox: rows are written with their decision, then leased and marked published; the
-- body of a message is never changed.
GRANT SELECT, INSERT ON outbox TO claims_worker;
GRANT UPDATE (claimed_until, published_at) ON outbox TO claims_worker;
GRANT USAGE ON SEQUENCE outbox_id_seq TO claims_worker;

-- The worker does not migrate; at start it checks that every migration it knows is applied
-- and otherwise stops, asking for `claimctl db migrate` as the owner role.
GRANT SELECT ON _sqlx_migrations TO claims_worker;
