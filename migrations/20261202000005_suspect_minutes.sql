-- Completeness: a minute is covered only when an answer held a candle for it, or when later
-- answers confirmed the source has none. Trading minutes an answer lacked are suspect until then:
-- asked again (`asks` answers have lacked it so far, next no earlier than `next_ask_at`), then
-- confirmed empty with the reason.
CREATE TABLE IF NOT EXISTS suspect_minutes (
    instrument_token  bigint NOT NULL,
    minute            timestamptz NOT NULL,
    asks              integer NOT NULL CHECK (asks >= 1),
    -- Of those, the answers that held a later candle (it was missing inside them, not at the end).
    inside            integer NOT NULL DEFAULT 0,
    next_ask_at       timestamptz NOT NULL,
    -- No candle after it in the answer that last lacked it (a tail that ended early, or lag).
    tail              boolean NOT NULL,
    first_seen        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_token, minute)
);

CREATE TABLE IF NOT EXISTS confirmed_empty (
    instrument_token  bigint NOT NULL,
    minute            timestamptz NOT NULL,
    reason            text NOT NULL,
    confirmed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_token, minute)
);
