-- Identifiers compare byte by byte (collation "C").
--
-- Member, provider, claim and counter identifiers, periods and hashes are codes, not words: no
-- language orders them. Under a linguistic collation (the usual server default, even C.UTF-8)
-- every comparison goes through strcoll(); profiling `claimctl bench` with auto_explain showed
-- the batch's counter lookup sorting a thousand rows through it in about 4 ms, most of that
-- query's time, and every index insert into these keys paying the same. With "C" the order
-- is the bytes' order (for UTF-8, the code points'), the same on every server, and comparisons
-- are memcmp.
--
-- Rewrites the tables and their indexes: on a large database run it in a maintenance window.
ALTER TABLE counters
    ALTER COLUMN subject_kind TYPE text COLLATE "C",
    ALTER COLUMN subject_id TYPE text COLLATE "C",
    ALTER COLUMN counter TYPE text COLLATE "C",
    ALTER COLUMN period TYPE text COLLATE "C";

ALTER TABLE claims
    ALTER COLUMN provider_id TYPE text COLLATE "C",
    ALTER COLUMN claim_id TYPE text COLLATE "C",
    ALTER COLUMN member_id TYPE text COLLATE "C",
    ALTER COLUMN household_id TYPE text COLLATE "C";

ALTER TABLE line_history
    ALTER COLUMN member_id TYPE text COLLATE "C",
    ALTER COLUMN provider_id TYPE text COLLATE "C",
    ALTER COLUMN act TYPE text COLLATE "C",
    ALTER COLUMN origin_provider_id TYPE text COLLATE "C",
    ALTER COLUMN origin_claim_id TYPE text COLLATE "C";

ALTER TABLE members
    ALTER COLUMN member_id TYPE text COLLATE "C",
    ALTER COLUMN household_id TYPE text COLLATE "C";

ALTER TABLE providers ALTER COLUMN provider_id TYPE text COLLATE "C";

ALTER TABLE rejected_messages ALTER COLUMN body_sha256 TYPE text COLLATE "C";
