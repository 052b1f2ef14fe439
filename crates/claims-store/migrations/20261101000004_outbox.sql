-- The outbox: every message a decision announces, written in the decision's transaction, so a
-- recorded decision is always published at least once, even if the worker dies right after
-- the commit. The worker publishes new rows at once and marks them when the broker confirms;
-- rows left unmarked are handed out again (`Store::pending_outbox`).
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    destination    text NOT NULL CHECK (destination IN ('decisions', 'payments', 'reply')),
    -- The reply queue, for destination 'reply' only.
    reply_to       text,
    routing_key    text NOT NULL,
    -- Stable per decision and payment: a consumer drops duplicates by it.
    message_id     text NOT NULL,
    correlation_id text,
    body           bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Set while a publisher has taken the row from `pending_outbox`.
    claimed_until  timestamptz,
    published_at   timestamptz,
    CHECK ((destination = 'reply') = (reply_to IS NOT NULL))
);
-- The relay only ever looks for unpublished rows, a tiny fraction of the table.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
