-- The registry and the rule sources.
--
-- Members and providers are stored as documents in their registry-file form (what
-- `claimctl registry import` reads and what an audit entry records), so the snapshot a claim
-- read is exactly what the regulator sees, and a new registry field needs no migration.
-- Only the columns the store looks things up by are pulled out.

CREATE TABLE members (
    member_id    text PRIMARY KEY,
    -- Pulled out to find a member's household (counters, locks) and its other members.
    household_id text NOT NULL,
    document     jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX members_household ON members (household_id);

CREATE TABLE providers (
    provider_id text PRIMARY KEY,
    document    jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every rule pack that decided something, by content hash: a replay years later loads these
-- very sources. A version is a hash of its sources, so rows are never updated.
CREATE TABLE rule_sources (
    version  text PRIMARY KEY CHECK (version LIKE 'sha256:%'),
    pack     text NOT NULL,
    -- [{"path": "plans/rg.rhai", "text": "..."}], sorted by path.
    sources  jsonb NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);
