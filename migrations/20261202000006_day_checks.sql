-- Days settle: per instrument and IST trading day, the checks after its session (one fetch of the
-- settled day, compared with the store). `checked_at` is set when a check was accepted (the day is
-- then final); `revisions` counts the fetches that found stored minutes changed, `revised_minutes`
-- how many; `adjustment` is the constant ratio a whole equity day changed by.
CREATE TABLE IF NOT EXISTS day_checks (
    instrument_token  bigint NOT NULL,
    day               date NOT NULL,
    checks            integer NOT NULL DEFAULT 0,
    last_check_at     timestamptz,
    checked_at        timestamptz,
    revisions         integer NOT NULL DEFAULT 0,
    revised_minutes   integer NOT NULL DEFAULT 0,
    adjustment        double precision,
    PRIMARY KEY (instrument_token, day)
);

-- When the answer that last lacked a suspect at its tail held every stored minute
-- (`tail_agrees`), the candle it ended at (`tail_end`, NULL: it held none): two such answers
-- ending at the same candle explain an option's tail after its session.
ALTER TABLE suspect_minutes ADD COLUMN IF NOT EXISTS tail_agrees boolean NOT NULL DEFAULT false;
ALTER TABLE suspect_minutes ADD COLUMN IF NOT EXISTS tail_end timestamptz;
