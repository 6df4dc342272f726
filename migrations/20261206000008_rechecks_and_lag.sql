-- Days within reach of their checks. `stale_since`: when a later adjustment of the instrument was
-- found; the day is `suspect` until a check of it is accepted again (then NULL).
ALTER TABLE day_checks ADD COLUMN IF NOT EXISTS stale_since timestamptz;

-- How late the source publishes. Per instrument, the smallest gap seen since `since` (an hour at
-- most) between an answer that asked up to the present and the end of its newest candle: a source
-- `lag` behind never serves closer than that, and an answer cut short only makes the gap larger,
-- so the smallest gap of the recent answers is the lag. A minute is never confirmed empty before
-- the source could have published it.
CREATE TABLE IF NOT EXISTS source_lag (
    instrument_token  bigint PRIMARY KEY,
    lag               interval NOT NULL,
    since             timestamptz NOT NULL DEFAULT now()
);
