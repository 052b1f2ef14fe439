-- Counters, claims and the line history used for duplicate detection.

-- One row per counter: subject (member or household), period ("2025", "2025-11-05", "last",
-- "all", a scheme name for debts) and name. The period comes before the name in the key
-- because a claim loads whole periods of its member and household at once.
CREATE TABLE counters (
    subject_kind text NOT NULL CHECK (subject_kind IN ('member', 'household')),
    subject_id   text NOT NULL,
    counter      text NOT NULL,
    period       text NOT NULL,
    value        bigint NOT NULL,
    PRIMARY KEY (subject_kind, subject_id, period, counter)
);

-- One row per claim received, keyed as providers identify claims: the idempotency key of the
-- whole system. `decision` is the full decision/v1 as published (with its audit place), so a
-- repeat is answered with the very same bytes; `moves` and `fingerprints` are what a
-- cancellation needs to undo it.
CREATE TABLE claims (
    provider_id         text NOT NULL,
    claim_id            text NOT NULL,
    member_id           text NOT NULL,
    -- The household whose counters the decision moved (NULL: member unknown, nothing moved).
    household_id        text,
    -- The message exactly as received (what `claimctl claims retry` re-adjudicates).
    input               text NOT NULL,
    outcome             text NOT NULL
                        CHECK (outcome IN ('complete', 'partial', 'rejected', 'error')),
    decision            jsonb NOT NULL,
    message_id          text NOT NULL,
    moves               jsonb NOT NULL,
    fingerprints        jsonb NOT NULL,
    reversal            jsonb,
    reversal_message_id text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, claim_id),
    CHECK ((reversal IS NULL) = (reversal_message_id IS NULL))
);
-- `claimctl claims errors|retry` look for these only; they are few.
CREATE INDEX claims_in_error ON claims (updated_at) WHERE outcome = 'error';

-- The lines of decided claims, per member and day of service: a new line with the same
-- member, provider, date, act and amount is a duplicate. The claim of origin is kept for
-- people investigating a duplicate; detection itself ignores it.
CREATE TABLE line_history (
    member_id          text NOT NULL,
    service_date       date NOT NULL,
    provider_id        text NOT NULL,
    act                text NOT NULL,
    charged            bigint NOT NULL,
    origin_provider_id text NOT NULL,
    origin_claim_id    text NOT NULL
);
-- A claim reads its member's lines on its service dates.
CREATE INDEX line_history_member_day ON line_history (member_id, service_date);
