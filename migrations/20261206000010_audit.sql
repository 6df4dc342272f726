-- Every mutation an operator made through the admin API or the CLI: who (which token, or the
-- CLI), what, on which jobs (the filter or the ids), how many, and how it went.
CREATE TABLE IF NOT EXISTS audit (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    target   jsonb NOT NULL DEFAULT '{}'::jsonb,
    matched  bigint,
    acted    bigint,
    ok       boolean NOT NULL,
    result   jsonb
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at DESC);
