-- Days within reach of their checks. `stale_since`: when a later adjustment of the instrument was
-- found; the day is `suspect` until a check of it is accepted again (then NULL).
ALTER TABLE day_checks ADD COLUMN IF NOT EXISTS stale_since timestamptz;

-- How late the source publishes: per instrument, the longest wait observed (over the last day)
-- between a minute's end and the answer that first held it after earlier answers had lacked it at
-- their tail. A minute is never confirmed empty before the source could have published it.
CREATE TABLE IF NOT EXISTS source_lag (
    instrument_token  bigint PRIMARY KEY,
    lag               interval NOT NULL,
    observed_at       timestamptz NOT NULL DEFAULT now()
);
