-- Invalid messages (a claim/v1 with a missing or malformed field) get a `rejected` decision but
-- no `claims` row: their ids may not even parse, and a corrected claim sent under the same ids
-- must be decided afresh. Without a key, a redelivered invalid message would be recorded again
-- (a second audit entry and a new message id). So they are keyed by the SHA-256 of their exact
-- bytes: the same bytes get the same decision again, with no new effect.
CREATE TABLE rejected_messages (
    body_sha256 text PRIMARY KEY,
    decision jsonb NOT NULL,
    message_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- The regulator reads decisions, rejected ones included.
GRANT SELECT ON rejected_messages TO claims_regulator;
